//! Reading a Claude Code entry from simd-json's tape: the general path, for
//! every line the fast path ([`super::fast`]) does not vouch for. Fields are
//! looked up on the tape without building a DOM; strings borrow from the
//! line until the row is built.

use simd_json::prelude::*;
use simd_json::tape::Value as TapeValue;
use simd_json::ValueType;

use super::entry::{dedup_key, timestamp_ms, Entry, Presence, MAX_TOKENS};
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

pub(super) fn extract(
    root: TapeValue<'_, '_>,
    ctx: &SourceContext,
    offset: u64,
    shared: &mut Interner,
) -> Result<Option<UsageRow>, MalformedKind> {
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
    };
    let key = dedup_key(message_id, request_id, uuid, || content_hash(root));
    Ok(Some(entry.into_row(key, ctx, offset, shared)))
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
