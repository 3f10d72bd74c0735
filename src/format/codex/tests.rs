//! The Codex rules, line by line (the traps the module doc lists).

use super::*;

const UUID: &str = "0195a000-0000-7000-8000-0000000000aa";

fn ctx(archived: bool) -> SourceContext {
    let root = if archived {
        Path::new("/h/.codex/archived_sessions")
    } else {
        Path::new("/h/.codex/sessions")
    };
    context_of(
        root,
        &root.join(format!(
            "2026/11/01/rollout-2026-11-01T10-00-00-{UUID}.jsonl"
        )),
    )
}

fn meta(extra: &str) -> String {
    format!(
        r#"{{"timestamp":"2026-11-01T10:00:00.000Z","type":"session_meta","payload":{{"id":"{UUID}","cwd":"/home/dev/app","cli_version":"0.58.0","source":"cli"{extra}}}}}"#
    )
}

fn turn(model: &str) -> String {
    format!(
        r#"{{"timestamp":"2026-11-01T10:00:01.000Z","type":"turn_context","payload":{{"cwd":"/home/dev/app","model":"{model}"}}}}"#
    )
}

fn usage(i: u64, c: u64, o: u64, r: u64) -> String {
    format!(
        r#"{{"input_tokens":{i},"cached_input_tokens":{c},"output_tokens":{o},"reasoning_output_tokens":{r},"total_tokens":{}}}"#,
        i + o
    )
}

fn count(
    ts: &str,
    total: Option<(u64, u64, u64, u64)>,
    last: Option<(u64, u64, u64, u64)>,
) -> String {
    let mut info = Vec::new();
    if let Some((i, c, o, r)) = total {
        info.push(format!(r#""total_token_usage":{}"#, usage(i, c, o, r)));
    }
    if let Some((i, c, o, r)) = last {
        info.push(format!(r#""last_token_usage":{}"#, usage(i, c, o, r)));
    }
    format!(
        r#"{{"timestamp":"{ts}","type":"event_msg","payload":{{"type":"token_count","info":{{{}}}}}}}"#,
        info.join(",")
    )
}

/// The child's own turn start at 11:00:00 (`started_at` is that second).
fn task_started() -> String {
    task_started_at("2026-11-01T11:00:00.000Z", Some(1_793_530_800))
}

fn task_started_at(ts: &str, started_at: Option<i64>) -> String {
    let started = started_at.map_or(String::new(), |s| format!(r#","started_at":{s}"#));
    format!(
        r#"{{"timestamp":"{ts}","type":"event_msg","payload":{{"type":"task_started","turn_id":"t1"{started}}}}}"#
    )
}

/// Runs lines through one state; returns the rows.
fn rows(lines: &[String], archived: bool) -> Vec<UsageRow> {
    let mut state = State::default();
    let mut shared = Interner::default();
    let c = ctx(archived);
    let mut offset = 0;
    let mut out = Vec::new();
    for l in lines {
        if let Parsed::Usage(r) = line(&mut state, l.as_bytes(), &c, offset, &mut shared) {
            out.push(*r);
        }
        offset += l.len() as u64 + 1;
    }
    out
}

fn sums(rows: &[UsageRow]) -> (u64, u64, u64, u64) {
    rows.iter().fold((0, 0, 0, 0), |a, r| {
        (
            a.0 + r.input_tokens,
            a.1 + r.cache_read_input_tokens,
            a.2 + r.output_tokens,
            a.3 + r.reasoning_tokens,
        )
    })
}

#[test]
fn the_last_turn_counts_once_and_a_reemitted_event_adds_nothing() {
    let r = rows(
        &[
            meta(""),
            turn("gpt-5-codex"),
            count(
                "2026-11-01T10:00:05Z",
                Some((10_000, 2000, 500, 200)),
                Some((10_000, 2000, 500, 200)),
            ),
            // The same event again, 10 ms later: nothing new.
            count(
                "2026-11-01T10:00:05.010Z",
                Some((10_000, 2000, 500, 200)),
                Some((10_000, 2000, 500, 200)),
            ),
            count(
                "2026-11-01T10:01:00Z",
                Some((25_000, 12_000, 900, 300)),
                Some((15_000, 10_000, 400, 100)),
            ),
        ],
        false,
    );
    assert_eq!(r.len(), 2);
    // input is the non-cached part; cached is cache read; reasoning is inside output.
    assert_eq!(sums(&r), (13_000, 12_000, 900, 300));
    assert_eq!(&*r[0].model, "gpt-5-codex");
    assert_eq!(&*r[0].agent, "codex");
    assert_eq!(&*r[0].entry_type, "token_count");
    assert_eq!(&*r[0].project, "/home/dev/app");
    assert_eq!(&*r[0].cc_version, "0.58.0");
    assert_eq!(
        &*r[0].session_id,
        format!("2026/11/01/rollout-2026-11-01T10-00-00-{UUID}")
    );
    assert!(r[0].key.starts_with(&format!("codex:{UUID}:")));
    assert_ne!(r[0].key, r[1].key);
    assert_eq!(r[0].total_tokens(), 10_500);
}

#[test]
fn without_last_usage_the_totals_are_subtracted_and_a_regression_resets() {
    // 5000 -> 3000 -> 3500 counts 5000 + 0 + 500.
    let r = rows(
        &[
            count("2026-11-01T10:00:01Z", Some((5000, 0, 0, 0)), None),
            count("2026-11-01T10:00:02Z", Some((3000, 0, 0, 0)), None),
            count("2026-11-01T10:00:03Z", Some((3500, 0, 0, 0)), None),
        ],
        false,
    );
    assert_eq!(sums(&r).0, 5500);
    assert_eq!(r.len(), 2);
}

#[test]
fn rate_limit_only_events_and_zero_deltas_are_skipped() {
    let null_info = r#"{"timestamp":"2026-11-01T10:00:01Z","type":"event_msg","payload":{"type":"token_count","info":null,"rate_limits":{"primary":{"used_percent":1.0}}}}"#;
    let mut state = State::default();
    let mut shared = Interner::default();
    assert_eq!(
        line(
            &mut state,
            null_info.as_bytes(),
            &ctx(false),
            0,
            &mut shared
        ),
        Parsed::Other
    );
    let r = rows(
        &[
            null_info.to_string(),
            count(
                "2026-11-01T10:00:02Z",
                Some((0, 0, 0, 0)),
                Some((0, 0, 0, 0)),
            ),
        ],
        false,
    );
    assert!(r.is_empty());
}

#[test]
fn without_a_model_the_event_is_priced_as_the_fallback_and_marked() {
    let r = rows(
        &[count("2026-11-01T10:00:02Z", Some((100, 0, 10, 0)), None)],
        false,
    );
    assert_eq!(&*r[0].model, FALLBACK_MODEL);
    assert_eq!(&*r[0].entry_type, "token_count:fallback_model");
    // A model in the event itself wins over the turn's.
    let with_model = r#"{"timestamp":"2026-11-01T10:00:02Z","type":"event_msg","payload":{"type":"token_count","info":{"model":"gpt-5.1-codex","total_token_usage":{"input_tokens":"100","output_tokens":10}}}}"#;
    let r = rows(&[turn("gpt-5"), with_model.to_string()], false);
    assert_eq!(&*r[0].model, "gpt-5.1-codex");
    // Numeric strings count.
    assert_eq!(r[0].input_tokens, 100);
}

#[test]
fn a_fork_replays_its_parent_until_its_own_first_turn() {
    // The child opens with the parent's events copied in (re-stamped, here
    // over several seconds), an ancestor's session_meta among them; only what
    // follows the child's first task_started is its own.
    let lines = [
        meta(r#","forked_from_id":"0195a000-0000-7000-8000-000000000001""#),
        meta(""),
        turn("gpt-5-codex"),
        // The parent's own turn start, copied: started long before the fork.
        task_started_at("2026-11-01T10:00:00.010Z", Some(1_790_000_000)),
        count(
            "2026-11-01T10:00:00Z",
            Some((100_000, 0, 1000, 0)),
            Some((100_000, 0, 1000, 0)),
        ),
        count(
            "2026-11-01T10:00:03Z",
            Some((200_000, 50_000, 2000, 0)),
            Some((100_000, 50_000, 1000, 0)),
        ),
        task_started(),
        count(
            "2026-11-01T11:00:05Z",
            Some((205_000, 50_000, 2500, 0)),
            None,
        ),
    ];
    let r = rows(&lines, false);
    // 5,000 input and 500 output: the child's own turn (baseline carried over).
    assert_eq!(r.len(), 1);
    assert_eq!(r[0].total_tokens(), 5_500);
    // A subagent rollout names its parent in `source`.
    let spawned =
        meta(r#","source2":1,"source":{"subagent":{"thread_spawn":{"parent_thread_id":"p"}}}"#)
            .replace(r#","source":"cli""#, "");
    let r = rows(
        &[spawned, lines[4].clone(), task_started(), lines[7].clone()],
        false,
    );
    assert_eq!(r.len(), 1);
    assert_eq!(r[0].total_tokens(), 105_000 + 1500);
}

#[test]
fn fork_local_usage_in_the_replays_second_still_counts() {
    // ccusage skips every leading event of the first second when a fork's
    // first two events share it; the child's own turn may be in that second.
    let lines = [
        meta(r#","forked_from_id":"p""#),
        count(
            "2026-11-01T10:00:00.100Z",
            Some((1000, 0, 30, 0)),
            Some((1000, 0, 30, 0)),
        ),
        task_started_at("2026-11-01T10:00:00.200Z", Some(1_793_527_200)),
        count(
            "2026-11-01T10:00:00.900Z",
            Some((3000, 0, 120, 0)),
            Some((2000, 0, 90, 0)),
        ),
    ];
    let r = rows(&lines, false);
    assert_eq!(r.len(), 1);
    assert_eq!(r[0].total_tokens(), 2090);
}

#[test]
fn six_digit_fractions_and_offsets_are_read() {
    let r = rows(
        &[count(
            "2026-11-01T10:00:02.123456+02:00",
            Some((10, 0, 1, 0)),
            None,
        )],
        false,
    );
    assert_eq!(
        r[0].ts_ms,
        crate::timestamp::parse_rfc3339_ms("2026-11-01T08:00:02.123Z").unwrap()
    );
}

#[test]
fn an_archived_copy_has_the_same_keys_and_loses_the_tie() {
    let lines = [count("2026-11-01T10:00:02Z", Some((10, 0, 1, 0)), None)];
    let live = rows(&lines, false);
    let archived = rows(&lines, true);
    assert_eq!(live[0].key, archived[0].key);
    assert!(live[0].version > archived[0].version);
}

#[test]
fn bad_lines_name_their_fault() {
    let mut state = State::default();
    let mut shared = Interner::default();
    let c = ctx(false);
    let mut classify = |l: &str| line(&mut state, l.as_bytes(), &c, 0, &mut shared);
    assert_eq!(
        classify("{\"type\":\"event_msg\""),
        Parsed::Malformed(MalformedKind::InvalidJson)
    );
    assert_eq!(classify("[1]"), Parsed::Malformed(MalformedKind::NotObject));
    let neg = count("2026-11-01T10:00:02Z", Some((10, 0, 1, 0)), None)
        .replace("\"input_tokens\":10", "\"input_tokens\":-4");
    assert_eq!(
        classify(&neg),
        Parsed::Malformed(MalformedKind::BadTokenCount)
    );
    let no_ts = count("2026-11-01T10:00:02Z", Some((20, 0, 1, 0)), None)
        .replace("\"timestamp\":\"2026-11-01T10:00:02Z\",", "");
    assert_eq!(
        classify(&no_ts),
        Parsed::Malformed(MalformedKind::MissingField)
    );
    let bad_ts = count("not a time", Some((30, 0, 1, 0)), None);
    assert_eq!(
        classify(&bad_ts),
        Parsed::Malformed(MalformedKind::BadTimestamp)
    );
    assert_eq!(
        line(
            &mut State::default(),
            b"{\"type\":\"x\",\"p\":\"\xff\"}",
            &c,
            0,
            &mut shared
        ),
        Parsed::Malformed(MalformedKind::InvalidUtf8)
    );
}

#[test]
fn context_names_the_session_by_its_path_and_the_content_by_its_uuid() {
    let c = ctx(false);
    assert_eq!(c.agent, crate::format::agent::Agent::Codex);
    assert_eq!(&*c.content_id, UUID);
    assert!(c.primary);
    assert!(!ctx(true).primary);
    let odd = context_of(Path::new("/x"), Path::new("/x/notes.jsonl"));
    assert_eq!(&*odd.content_id, "notes");
    assert_eq!(&*odd.session_from_path, "notes");
}

#[test]
fn state_survives_a_round_trip_through_the_checkpoint() {
    let mut state = State::default();
    let mut shared = Interner::default();
    for l in [
        meta(""),
        turn("gpt-5"),
        count("2026-11-01T10:00:02Z", Some((7, 1, 3, 1)), None),
    ] {
        line(&mut state, l.as_bytes(), &ctx(false), 0, &mut shared);
    }
    let saved =
        serde_json::to_string(&crate::format::FileState::Codex(Box::new(state.clone()))).unwrap();
    let back: crate::format::FileState = serde_json::from_str(&saved).unwrap();
    assert_eq!(back, crate::format::FileState::Codex(Box::new(state)));
    assert!(saved.contains("\"format\":\"codex\""));
}

#[test]
fn without_started_at_a_copy_ends_at_a_turn_that_follows_a_pause() {
    let burst = |ms: u32| format!("2026-11-01T10:00:00.{ms:03}Z");
    let lines = [
        meta(r#","forked_from_id":"p""#),
        // Copied, written back to back: neither start ends the copy.
        task_started_at(&burst(1), None),
        count(&burst(2), Some((1000, 0, 10, 0)), Some((1000, 0, 10, 0))),
        task_started_at(&burst(3), None),
        count(&burst(4), Some((3000, 0, 30, 0)), Some((2000, 0, 20, 0))),
        // The child's own turn, seconds later.
        task_started_at("2026-11-01T10:00:07.000Z", None),
        count("2026-11-01T10:00:09.000Z", Some((3500, 0, 35, 0)), None),
    ];
    let r = rows(&lines, false);
    assert_eq!(r.len(), 1);
    assert_eq!(r[0].total_tokens(), 505);
}
