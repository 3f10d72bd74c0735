//! The ClickHouse error callers branch on: retry (server down, overloaded),
//! re-authenticate, or give up on the batch (the server rejected its data).

/// A failed ClickHouse request.
#[derive(Debug, thiserror::Error)]
pub enum ChError {
    /// Connection refused, reset, or timed out: the server is down or slow.
    #[error("clickhouse unreachable: {0}")]
    Unreachable(String),
    /// The server refused our credentials.
    #[error("clickhouse authentication failed: {0}")]
    Auth(String),
    /// The server rejected the request's data or SQL; retrying cannot help.
    #[error("clickhouse rejected the request (code {code}): {message}")]
    Rejected {
        /// ClickHouse exception code.
        code: u32,
        /// Server message.
        message: String,
    },
    /// Any other server-side error (memory, too many parts, …): worth retrying.
    #[error("clickhouse error (code {code}): {message}")]
    Server {
        /// ClickHouse exception code (0 when the response had none).
        code: u32,
        /// Server message.
        message: String,
    },
}

/// Exception codes that mean "this request's data or SQL is wrong".
const REJECTED_CODES: &[u32] = &[
    6,   // CANNOT_PARSE_TEXT
    16,  // NO_SUCH_COLUMN_IN_TABLE
    26,  // CANNOT_PARSE_QUOTED_STRING
    27,  // CANNOT_PARSE_INPUT_ASSERTION_FAILED
    32,  // ATTEMPT_TO_READ_AFTER_EOF
    33,  // CANNOT_READ_ALL_DATA
    38,  // CANNOT_PARSE_DATE
    41,  // CANNOT_PARSE_DATETIME
    47,  // UNKNOWN_IDENTIFIER
    53,  // TYPE_MISMATCH
    62,  // SYNTAX_ERROR
    69,  // ARGUMENT_OUT_OF_BOUND
    70,  // CANNOT_CONVERT_TYPE
    72,  // CANNOT_PARSE_NUMBER
    117, // INCORRECT_DATA
    131, // TOO_LARGE_STRING_SIZE
    395, // FUNCTION_THROW_IF_VALUE_IS_NON_ZERO (a table's own guard rejected a row)
];

/// Codes for bad credentials or missing rights.
const AUTH_CODES: &[u32] = &[192, 193, 194, 195, 516];

impl ChError {
    /// True when the same request may succeed later unchanged.
    pub fn is_retriable(&self) -> bool {
        matches!(self, ChError::Unreachable(_) | ChError::Server { .. })
    }

    /// True when the database or table is missing (dropped under us): the
    /// schema should be created again before retrying.
    pub fn is_missing_schema(&self) -> bool {
        matches!(self, ChError::Server { code: 60 | 81, .. })
    }

    /// True when fresh credentials may help.
    pub fn is_auth(&self) -> bool {
        matches!(self, ChError::Auth(_))
    }

    /// True when the server (or a proxy) answered before reading the insert's
    /// body: the client then only sees its body channel closed, not the answer,
    /// which may have been a refused token.
    pub fn may_be_early_refusal(&self) -> bool {
        matches!(self, ChError::Unreachable(m) if m.contains("channel closed"))
    }

    /// Classifies an error of the `clickhouse` crate.
    pub fn from_client(e: clickhouse::error::Error) -> ChError {
        use clickhouse::error::Error as E;
        match e {
            E::Network(err) => ChError::Unreachable(chain(&*err)),
            E::TimedOut => ChError::Unreachable("request timed out".into()),
            E::BadResponse(msg) => Self::from_response(&msg),
            other => ChError::Server {
                code: 0,
                message: other.to_string(),
            },
        }
    }

    /// Classifies a server response body such as `Code: 62, e.displayText() = …`
    /// (18.16) or `Code: 62. DB::Exception: …` (newer).
    pub fn from_response(msg: &str) -> ChError {
        let message = msg.trim().chars().take(2000).collect::<String>();
        let code = parse_code(&message);
        let lower = message.to_ascii_lowercase();
        if AUTH_CODES.contains(&code)
            || lower.contains("unauthorized")
            || lower.contains("forbidden")
            || lower.contains("authentication failed")
        {
            return ChError::Auth(message);
        }
        if REJECTED_CODES.contains(&code) {
            return ChError::Rejected { code, message };
        }
        ChError::Server { code, message }
    }
}

fn parse_code(msg: &str) -> u32 {
    msg.find("Code: ")
        .map(|i| &msg[i + 6..])
        .map(|rest| {
            rest.chars()
                .take_while(char::is_ascii_digit)
                .collect::<String>()
        })
        .and_then(|d| d.parse().ok())
        .unwrap_or(0)
}

fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_server_messages() {
        let e = ChError::from_response("Code: 62, e.displayText() = DB::Exception: Syntax error");
        assert!(matches!(e, ChError::Rejected { code: 62, .. }));
        assert!(!e.is_retriable());
        let e = ChError::from_response("Code: 516. DB::Exception: default: Authentication failed");
        assert!(e.is_auth() && !e.is_retriable());
        let e = ChError::from_response("Code: 252. DB::Exception: Too many parts");
        assert!(e.is_retriable());
        assert!(ChError::Unreachable("refused".into()).is_retriable());
        assert!(!ChError::Unreachable("refused".into()).may_be_early_refusal());
        let cut = ChError::from_client(clickhouse::error::Error::Network("channel closed".into()));
        assert!(cut.may_be_early_refusal() && cut.is_retriable());
    }
}
