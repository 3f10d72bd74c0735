//! Reading a Claude Code entry from simd-json's tape: the general path, for
//! every line the fast path ([`super::fast`]) does not vouch for. Fields are
//! looked up on the tape without building a DOM; strings borrow from the
//! line until the row is built.

use simd_json::prelude::*;
use simd_json::tape::Value as TapeValue;
use simd_json::ValueType;

use super::entry::{dedup_key, timestamp_ms, Advisor, Entry, Presence, Speed, MAX_TOKENS};
use crate::format::MalformedKind;
use crate::record::{Interner, SourceContext, UsageRow};

type Field<'t, 'i> = Option<TapeValue<'t, 'i>>;

fn is_null(v: &TapeValue<'_, '_>) -> bool {
    v.value_type() == ValueType::Null
}

/// A present, non-null value.
fn present<'t, 'i>(v: Field<'t, 'i>) -> Field<'t, 'i> {
    v.filter(|v| !is_null(v))
}

fn opt_str<'i>(v: Field<'_, 'i>) -> Result<&'i str, MalformedKind> {
    match present(v) {
        None => Ok(""),
        Some(v) => v.into_string().ok_or(MalformedKind::MistypedField),
    }
}

fn tokens(v: Field<'_, '_>, need: Presence) -> Result<u64, MalformedKind> {
    match present(v) {
        None if need == Presence::Required => Err(MalformedKind::MissingField),
        None => Ok(0),
        Some(v) => match v.as_u64() {
            Some(n) if n <= MAX_TOKENS => Ok(n),
            _ => Err(MalformedKind::BadTokenCount),
        },
    }
}

/// The advisor calls in `usage.iterations[]` (elements of type
/// `advisor_message`); other iteration types are the entry's own and already
/// summed in its top-level usage. An `iterations` that is not an array, and
/// elements that are not objects, carry nothing tokenbridge reads.
fn advisors<'i>(usage: TapeValue<'_, 'i>) -> Result<Vec<Advisor<'i>>, MalformedKind> {
    let Some(list) = present(usage.get("iterations")).and_then(|v| v.as_array()) else {
        return Ok(Vec::new());
    };
    let mut out = Vec::new();
    for it in list.iter() {
        if !it.is_object()
            || it.get("type").and_then(|t| t.into_string()) != Some("advisor_message")
        {
            continue;
        }
        let (c5m, c1h) = match present(it.get("cache_creation")) {
            Some(cc) if cc.is_object() => (
                tokens(cc.get("ephemeral_5m_input_tokens"), Presence::Optional)?,
                tokens(cc.get("ephemeral_1h_input_tokens"), Presence::Optional)?,
            ),
            None => (0, 0),
            Some(_) => return Err(MalformedKind::MistypedField),
        };
        out.push(Advisor {
            model: opt_str(it.get("model"))?.into(),
            input_tokens: tokens(it.get("input_tokens"), Presence::Optional)?,
            output_tokens: tokens(it.get("output_tokens"), Presence::Optional)?,
            cache_creation_input_tokens: tokens(
                it.get("cache_creation_input_tokens"),
                Presence::Optional,
            )?,
            cache_creation_5m_tokens: c5m,
            cache_creation_1h_tokens: c1h,
            cache_read_input_tokens: tokens(it.get("cache_read_input_tokens"), Presence::Optional)?,
        });
    }
    Ok(out)
}

/// A recorded `costUSD`: a finite, non-negative number, or absent/null.
fn recorded_cost(v: Field<'_, '_>) -> Result<Option<f64>, MalformedKind> {
    match present(v) {
        None => Ok(None),
        Some(v) => match v.cast_f64() {
            Some(c) if c.is_finite() && c >= 0.0 => Ok(Some(c)),
            _ => Err(MalformedKind::MistypedField),
        },
    }
}

/// The rows of one line: the entry's usage row and its advisor calls'.
pub(super) type Rows = (UsageRow, Vec<UsageRow>);

pub(super) fn extract(
    root: TapeValue<'_, '_>,
    ctx: &SourceContext,
    offset: u64,
    shared: &mut Interner,
) -> Result<Option<Rows>, MalformedKind> {
    if !root.is_object() {
        return Err(MalformedKind::NotObject);
    }
    let line_type = opt_str(root.get("type"))?;

    // Where the assistant message lives: the line itself, or the subagent
    // message a progress line carries.
    let (envelope, message, entry_type) = match present(root.get("message")) {
        Some(m) if present(m.get("usage")).is_some() => (root, m, "assistant"),
        _ => {
            let data = present(root.get("data"));
            let inner = data
                .filter(|_| line_type == "progress")
                .filter(|d| d.get("type").and_then(|t| t.into_string()) == Some("agent_progress"))
                .and_then(|d| present(d.get("message")));
            match inner.and_then(|env| present(env.get("message")).map(|m| (env, m))) {
                Some((env, m)) if present(m.get("usage")).is_some() => (env, m, "agent_progress"),
                _ => {
                    check_other(root)?;
                    return Ok(None);
                }
            }
        }
    };
    let progress = entry_type == "agent_progress";
    let usage = message.get("usage").ok_or(MalformedKind::MissingField)?;
    if !usage.is_object() {
        return Err(MalformedKind::MistypedField);
    }

    let input_tokens = tokens(usage.get("input_tokens"), Presence::Required)?;
    let output_tokens = tokens(usage.get("output_tokens"), Presence::Required)?;
    let cache_creation_input_tokens =
        tokens(usage.get("cache_creation_input_tokens"), Presence::Optional)?;
    let cache_read_input_tokens = tokens(usage.get("cache_read_input_tokens"), Presence::Optional)?;
    let (cache_creation_5m_tokens, cache_creation_1h_tokens) =
        match present(usage.get("cache_creation")) {
            None => (0, 0),
            Some(cc) if cc.is_object() => (
                tokens(cc.get("ephemeral_5m_input_tokens"), Presence::Optional)?,
                tokens(cc.get("ephemeral_1h_input_tokens"), Presence::Optional)?,
            ),
            Some(_) => return Err(MalformedKind::MistypedField),
        };
    let (web_search_requests, web_fetch_requests) = match present(usage.get("server_tool_use")) {
        None => (0, 0),
        Some(st) if st.is_object() => (
            tokens(st.get("web_search_requests"), Presence::Optional)? as u32,
            tokens(st.get("web_fetch_requests"), Presence::Optional)? as u32,
        ),
        Some(_) => return Err(MalformedKind::MistypedField),
    };
    let service_tier = opt_str(usage.get("service_tier"))?;
    let speed = Speed::of(opt_str(usage.get("speed"))?);
    let thinking_tokens = match present(usage.get("output_tokens_details")) {
        None => 0,
        Some(d) if d.is_object() => tokens(d.get("thinking_tokens"), Presence::Optional)?,
        Some(_) => return Err(MalformedKind::MistypedField),
    };
    let advisors = advisors(usage)?;

    // A progress line's own timestamp stands in when the carried message has none.
    let ts_field = present(envelope.get("timestamp")).or_else(|| present(root.get("timestamp")));
    let ts_str = match ts_field {
        None => return Err(MalformedKind::MissingField),
        Some(v) => v.into_string().ok_or(MalformedKind::BadTimestamp)?,
    };
    let ts_ms = timestamp_ms(ts_str)?;

    let message_id = opt_str(message.get("id"))?;
    let uuid = opt_str(envelope.get("uuid"))?;
    let request_id = opt_str(envelope.get("requestId"))?;
    let agent_id = if progress {
        let data = root.get("data");
        opt_str(data.and_then(|d| d.get("agentId")))?
    } else {
        opt_str(root.get("agentId"))?
    };
    let is_sidechain = match present(root.get("isSidechain")) {
        None => false,
        Some(v) => v.as_bool().ok_or(MalformedKind::MistypedField)?,
    };
    let entry = Entry {
        entry_type,
        ts_ms,
        message_id: message_id.into(),
        request_id: request_id.into(),
        model: opt_str(message.get("model"))?.into(),
        session_id: opt_str(root.get("sessionId"))?.into(),
        cwd: opt_str(root.get("cwd"))?.into(),
        git_branch: opt_str(root.get("gitBranch"))?.into(),
        cc_version: opt_str(root.get("version"))?.into(),
        agent_id: agent_id.into(),
        service_tier: service_tier.into(),
        is_sidechain,
        input_tokens,
        output_tokens,
        cache_creation_input_tokens,
        cache_creation_5m_tokens,
        cache_creation_1h_tokens,
        cache_read_input_tokens,
        web_search_requests,
        web_fetch_requests,
        speed,
        thinking_tokens,
        recorded_cost: recorded_cost(envelope.get("costUSD"))?,
        advisors,
    };
    let key = dedup_key(message_id, request_id, uuid, || content_hash(root));
    Ok(Some(entry.into_rows(key, ctx, offset, shared)))
}

/// Checks the few fields an entry without usage must get right to be "valid".
fn check_other(root: TapeValue<'_, '_>) -> Result<(), MalformedKind> {
    opt_str(root.get("type"))?;
    Ok(())
}

/// A stable hash of an entry's content for the last-resort dedup key (no
/// message id, no uuid). Computed over the tape's strings and numbers, so the
/// same entry hashes the same whatever its whitespace.
pub(super) fn content_hash(root: TapeValue<'_, '_>) -> u128 {
    let mut h = xxhash_rust::xxh3::Xxh3::new();
    hash_value(&mut h, root);
    h.digest128()
}

fn hash_value(h: &mut xxhash_rust::xxh3::Xxh3, v: TapeValue<'_, '_>) {
    if let Some(obj) = v.as_object() {
        h.update(b"{");
        for (k, val) in obj.iter() {
            h.update(k.as_bytes());
            h.update(b":");
            hash_value(h, val);
        }
        h.update(b"}");
    } else if let Some(arr) = v.as_array() {
        h.update(b"[");
        for val in arr.iter() {
            hash_value(h, val);
            h.update(b",");
        }
        h.update(b"]");
    } else if let Some(s) = v.as_str() {
        h.update(b"\"");
        h.update(s.as_bytes());
        h.update(b"\"");
    } else if let Some(n) = v.as_u64() {
        h.update(&n.to_le_bytes());
    } else if let Some(n) = v.as_i64() {
        h.update(&n.to_le_bytes());
    } else if let Some(f) = v.as_f64() {
        h.update(&f.to_bits().to_le_bytes());
    } else if let Some(b) = v.as_bool() {
        h.update(if b { b"t" } else { b"f" });
    } else {
        h.update(b"n");
    }
}
