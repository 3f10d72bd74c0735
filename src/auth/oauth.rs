//! The OAuth2 client-credentials grant: the [`TokenSource`] for ClickHouse
//! Cloud or an authenticating proxy. The client secret travels only in the
//! form body and is never part of an error or a log line.

use std::time::Duration;

use crate::auth::token::{FetchedToken, TokenError, TokenSource};
use crate::config::OAuth2Config;
use crate::secret::Secret;

/// The grant, as configured in `[upstream.auth]`.
#[derive(Debug, Clone)]
pub struct ClientCredentials(pub OAuth2Config);

#[derive(serde::Deserialize)]
struct TokenResponse {
    access_token: String,
    #[serde(default)]
    expires_in: Option<f64>,
}

impl TokenSource for ClientCredentials {
    fn fetch(&self) -> Result<FetchedToken, TokenError> {
        let c = &self.0;
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .timeout_global(Some(c.request_timeout))
            .http_status_as_error(false)
            .build()
            .into();
        let mut form: Vec<(&str, &str)> = vec![
            ("grant_type", "client_credentials"),
            ("client_id", &c.client_id),
            ("client_secret", c.client_secret.expose()),
        ];
        if let Some(s) = &c.scope {
            form.push(("scope", s));
        }
        if let Some(a) = &c.audience {
            form.push(("audience", a));
        }
        for (k, v) in &c.extra {
            form.push((k, v));
        }
        let mut resp = agent
            .post(&c.token_url)
            .send_form(form)
            // ureq's error names the URL and the cause, never the body.
            .map_err(|e| TokenError::Endpoint(e.to_string()))?;
        let status = resp.status();
        let body = resp
            .body_mut()
            .read_to_string()
            .map_err(|e| TokenError::Endpoint(format!("reading the response: {e}")))?;
        if !status.is_success() {
            let excerpt: String = body.chars().take(200).collect();
            let excerpt = excerpt.replace(c.client_secret.expose(), "***");
            return Err(TokenError::Endpoint(format!("HTTP {status}: {excerpt}")));
        }
        let parsed: TokenResponse = serde_json::from_str(&body)
            .map_err(|e| TokenError::Endpoint(format!("unexpected token response: {e}")))?;
        Ok(FetchedToken {
            value: Secret::new(parsed.access_token),
            expires_in: parsed
                .expires_in
                .filter(|s| s.is_finite() && *s > 0.0)
                .map(Duration::from_secs_f64),
        })
    }

    fn describe(&self) -> String {
        format!(
            "oauth2 client credentials at {} (client {})",
            self.0.token_url, self.0.client_id
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::net::TcpListener;

    /// A one-shot HTTP server answering `status` and `body`; returns the request it saw.
    fn serve_once(
        status: &'static str,
        body: &'static str,
    ) -> (String, std::thread::JoinHandle<String>) {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/oauth/token", l.local_addr().unwrap());
        let h = std::thread::spawn(move || {
            let (mut s, _) = l.accept().unwrap();
            let mut req = Vec::new();
            let mut buf = [0u8; 4096];
            loop {
                let n = s.read(&mut buf).unwrap();
                req.extend_from_slice(&buf[..n]);
                let text = String::from_utf8_lossy(&req);
                if let Some((head, rest)) = text.split_once("\r\n\r\n") {
                    let len = head
                        .lines()
                        .find_map(|l| {
                            l.to_ascii_lowercase()
                                .strip_prefix("content-length: ")
                                .map(|v| v.trim().parse::<usize>().unwrap())
                        })
                        .unwrap_or(0);
                    if rest.len() >= len {
                        break;
                    }
                }
            }
            write!(s, "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}", body.len()).unwrap();
            String::from_utf8_lossy(&req).into_owned()
        });
        (url, h)
    }

    fn creds(url: String) -> ClientCredentials {
        ClientCredentials(OAuth2Config {
            token_url: url,
            client_id: "tb-client".into(),
            client_secret: Secret::new("s3cr3t-value"),
            scope: Some("write".into()),
            audience: None,
            extra: vec![("resource".into(), "ch".into())],
            refresh_buffer: Duration::from_secs(300),
            default_lifetime: Duration::from_secs(3600),
            request_timeout: Duration::from_secs(5),
            slow_refresh: Duration::from_secs(2),
        })
    }

    #[test]
    fn posts_the_grant_and_reads_the_token() {
        let (url, h) = serve_once(
            "200 OK",
            r#"{"access_token":"abc.def","token_type":"Bearer","expires_in":3600}"#,
        );
        let t = creds(url).fetch().unwrap();
        assert_eq!(t.value.expose(), "abc.def");
        assert_eq!(t.expires_in, Some(Duration::from_secs(3600)));
        let req = h.join().unwrap();
        assert!(req.starts_with("POST /oauth/token"), "{req}");
        for part in [
            "grant_type=client_credentials",
            "client_id=tb-client",
            "client_secret=s3cr3t-value",
            "scope=write",
            "resource=ch",
        ] {
            assert!(req.contains(part), "{part} missing in {req}");
        }
    }

    #[test]
    fn errors_never_contain_the_secret() {
        let (url, h) = serve_once(
            "401 Unauthorized",
            r#"{"error":"invalid_client","got":"s3cr3t-value"}"#,
        );
        let e = creds(url).fetch().unwrap_err().to_string();
        h.join().unwrap();
        assert!(e.contains("401") && !e.contains("s3cr3t-value"), "{e}");
        let (url, h) = serve_once("200 OK", r#"{"access_token":"x"}"#);
        assert_eq!(creds(url).fetch().unwrap().expires_in, None);
        h.join().unwrap();
        let dead = creds("http://127.0.0.1:1/token".into())
            .fetch()
            .unwrap_err()
            .to_string();
        assert!(!dead.contains("s3cr3t-value"), "{dead}");
        assert!(!format!("{:?}", creds("http://x".into())).contains("s3cr3t-value"));
    }
}
