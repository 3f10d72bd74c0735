//! Unit tests of the pi / OpenClaw reader on hand-written lines.

use std::path::Path;

use super::*;

fn read(agent: Agent, path: &str, lines: &[&str]) -> Vec<Parsed> {
    let ctx = context_of(agent, Path::new("/h/root"), Path::new(path));
    let mut st = State::default();
    let mut shared = Interner::default();
    let mut offset = 0;
    lines
        .iter()
        .map(|l| {
            let p = line(&mut st, l.as_bytes(), &ctx, offset, &mut shared);
            offset += l.len() as u64 + 1;
            p
        })
        .collect()
}

fn row(p: &Parsed) -> &UsageRow {
    match p {
        Parsed::Usage(r) => r,
        other => panic!("not usage: {other:?}"),
    }
}

const PI: &str = "/h/root/sessions/--work-app--/2026-11-20T10-00-00-000Z_0a1b2c3d-1111-4222-8333-444455556666.jsonl";

#[test]
fn pi_paths_name_session_and_project() {
    let c = context_of(Agent::Pi, Path::new("/h/root"), Path::new(PI));
    assert_eq!(
        &*c.session_from_path,
        "0a1b2c3d-1111-4222-8333-444455556666"
    );
    assert_eq!(&*c.project, "--work-app--");
    assert!(c.primary);
    let root = Path::new("/h/.openclaw");
    let c = context_of(
        Agent::OpenClaw,
        root,
        Path::new("/h/.openclaw/agents/main/sessions/5f0c.jsonl.reset.2026-11-22T10-00-00"),
    );
    assert_eq!(&*c.session_from_path, "5f0c");
    assert_eq!(&*c.project, "main");
    assert!(!c.primary, "a reset copy loses ties to the live file");
    assert!(is_openclaw_session(Path::new("/a/x.jsonl.deleted.1")));
    assert!(!is_openclaw_session(Path::new("/a/x.json")));
}

#[test]
fn assistant_usage_is_a_row_with_its_recorded_cost() {
    let out = read(
        Agent::Pi,
        PI,
        &[
            r#"{"type":"session","version":3,"id":"s","timestamp":"2026-11-20T10:00:00.000Z","cwd":"/work/app"}"#,
            r#"{"type":"message","id":"u1","timestamp":"2026-11-20T10:00:01.000Z","message":{"role":"user","content":"hi"}}"#,
            r#"{"type":"message","id":"a1","timestamp":"2026-11-20T10:00:02.000Z","message":{"role":"assistant","model":"claude-sonnet-4-5","usage":{"input":100,"output":50,"cacheRead":1000,"cacheWrite":200,"totalTokens":1350,"cost":{"total":0.0021}},"timestamp":1795428002999}}"#,
        ],
    );
    assert_eq!(out[0], Parsed::Other);
    assert_eq!(out[1], Parsed::Other);
    let r = row(&out[2]);
    assert_eq!(
        (
            r.input_tokens,
            r.output_tokens,
            r.cache_read_input_tokens,
            r.cache_creation_input_tokens
        ),
        (100, 50, 1000, 200)
    );
    assert_eq!(r.recorded_cost_usd, Some(0.0021));
    assert_eq!(&*r.model, "claude-sonnet-4-5");
    assert_eq!(&*r.cwd, "/work/app");
    assert_eq!(&*r.agent, "pi");
    // pi: the entry's own timestamp.
    assert_eq!(r.ts_ms, 1_795_168_802_000);
    assert_eq!(r.key, "pi:a1@1795168802000");
}

#[test]
fn the_model_comes_from_the_last_model_change_when_the_message_names_none() {
    let out = read(
        Agent::OpenClaw,
        "/h/root/agents/main/sessions/5f0c.jsonl",
        &[
            r#"{"type":"model_change","id":"m","modelId":"claude-sonnet-4-5"}"#,
            r#"{"type":"message","id":"a1","message":{"role":"assistant","usage":{"input":1,"output":2},"timestamp":1795338002000}}"#,
            r#"{"type":"custom","customType":"model-snapshot","data":{"modelId":"gpt-5.1-codex"}}"#,
            r#"{"type":"message","id":"a2","timestamp":"2026-11-23T09:00:02.000Z","message":{"role":"assistant","usage":{"input":1,"output":2}}}"#,
        ],
    );
    let a1 = row(&out[1]);
    assert_eq!(&*a1.model, "claude-sonnet-4-5");
    // OpenClaw: the message's own time first.
    assert_eq!(a1.ts_ms, 1_795_338_002_000);
    assert_eq!(a1.recorded_cost_usd, None);
    let a2 = row(&out[3]);
    assert_eq!(&*a2.model, "gpt-5.1-codex");
    assert_eq!(a2.ts_ms, 1_795_424_402_000);
}

#[test]
fn copies_share_keys_and_lines_without_ids_are_keyed_by_content() {
    let l = r#"{"type":"message","id":"a1","timestamp":"2026-11-20T10:00:02.000Z","message":{"role":"assistant","usage":{"input":1,"output":2}}}"#;
    let live = read(Agent::OpenClaw, "/h/root/agents/a/sessions/s.jsonl", &[l]);
    let copy = read(
        Agent::OpenClaw,
        "/h/root/agents/a/sessions/s.jsonl.reset.1",
        &[l],
    );
    assert_eq!(row(&live[0]).key, row(&copy[0]).key);
    assert!(
        row(&live[0]).version > row(&copy[0]).version,
        "the live file wins"
    );
    let no_id = r#"{"type":"message","timestamp":"2026-11-20T10:00:02.000Z","message":{"role":"assistant","usage":{"input":1,"output":2}}}"#;
    let twice = read(Agent::Pi, PI, &[no_id, no_id]);
    assert_eq!(row(&twice[0]).key, row(&twice[1]).key);
    assert!(row(&twice[0]).key.starts_with("pi:hash:"));
}

#[test]
fn bad_lines_are_named() {
    let out = read(
        Agent::Pi,
        PI,
        &[
            r#"{"type":"message","id":"a","timestamp":"2026-11-20T10:00:02.000Z","message":{"role":"assistant","usage":{"input":-1,"output":2}}}"#,
            r#"{"type":"message","id":"a","message":{"role":"assistant","usage":{"input":1,"output":2}}}"#,
            r#"{"type":"message","id":"a","timestamp":"soon","message":{"role":"assistant","usage":{"input":1,"output":2}}}"#,
            r#"{"type":"message","id":"a","timestamp":"2026-11-20T10:00:02.000Z","message":{"role":"assistant","usage":{"input":1,"cost":{"total":"x"}}}}"#,
            r#"{"type":"message","id":"a","timestamp":"2026-11-20T10:00:02.000Z","message":{"role":"assistant","usage":7}}"#,
            r#"{"type":"message""#,
            r#"{"type":"message","message":{"role":"assistant","usage":null}}"#,
        ],
    );
    assert_eq!(
        out,
        vec![
            Parsed::Malformed(MalformedKind::BadTokenCount),
            Parsed::Malformed(MalformedKind::MissingField),
            Parsed::Malformed(MalformedKind::BadTimestamp),
            Parsed::Malformed(MalformedKind::MistypedField),
            Parsed::Malformed(MalformedKind::MistypedField),
            Parsed::Malformed(MalformedKind::InvalidJson),
            Parsed::Other,
        ]
    );
}
