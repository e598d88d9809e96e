//! The services state machine on hand-made interaction sequences: pipe lifecycle edges,
//! prequential scoring, the adaptive threshold.

use super::state::{Emitted, Interaction, Kind, Out, ServiceState};
use crate::event::{Accessor, FieldPath};
use crate::plan::services::ServicesPlan;
use crate::value::Value;

fn plan() -> ServicesPlan {
    let f = |n: &str| Accessor::Payload(FieldPath::parse(n).unwrap());
    ServicesPlan {
        name: "calls".into(),
        sequence: f("trace_id"),
        source: f("source"),
        target: f("target"),
        kind: f("kind"),
        bytes: f("bytes"),
        latency: f("latency_ms"),
        max_order: 2,
        order: Some(1),
        discount: Some(crate::model::markov::Discount::Fixed(0.5)),
        window_ms: 3_600_000,
        long_windows_ms: Vec::new(),
        mix_share: 0.001,
        reselect_every_ms: None,
        held_out: 0.2,
        transitions_every_ms: 60_000,
        top_k: 2,
        sequence_timeout_ms: 1_000,
        resonance_window_ms: 60_000,
        resonance: Default::default(),
        horizon_ms: 1_000,
        threshold: 0.5,
        idle_timeout_ms: 10_000,
        target_precision: None,
        precision_window: 10,
        min_threshold: 0.05,
        feedback_calls: 2,
        pipes: Default::default(),
        rules: vec![crate::plan::services::PipeRule {
            source: "a".into(),
            target: "*".into(),
            filters: vec!["status = 'ok'".into()],
            transforms: vec![],
        }],
    }
}

fn call(time: i64, seq: &str, a: &str, b: &str) -> Interaction {
    Interaction {
        time,
        sequence: seq.into(),
        source: a.into(),
        target: b.into(),
        kind: Kind::Transmitted,
        bytes: 100,
        latency_bits: 1.0f64.to_bits(),
    }
}

/// Feeds each interaction in its own 1 ms tick, then ends the input.
fn run(state: &mut ServiceState, items: Vec<Interaction>) -> Emitted {
    let mut out = Vec::new();
    for item in items {
        let t = item.time as u64;
        state.tick(t, vec![item], &mut out);
    }
    state.fire_before(None, &mut out);
    out
}

fn events(out: &Emitted) -> Vec<(i64, String, String, String, Value, Value)> {
    out.iter()
        .filter_map(|(_, o, _)| match o {
            Out::PipeEvent(r) => Some((
                match r[0] {
                    Value::Time(t) => t,
                    _ => panic!("time"),
                },
                r[1].to_string(),
                r[2].to_string(),
                r[3].to_string(),
                r[4].clone(),
                r[7].clone(),
            )),
            _ => None,
        })
        .collect()
}

fn names(evs: &[(i64, String, String, String, Value, Value)]) -> Vec<(i64, &str)> {
    evs.iter().map(|e| (e.0, e.3.as_str())).collect()
}

#[test]
fn a_call_at_the_idle_deadline_finds_the_pipe_torn_down() {
    let mut s = ServiceState::new(plan());
    let out = run(&mut s, vec![call(0, "1", "x", "y"), call(10_000, "2", "x", "y")]);
    let evs = events(&out);
    let got = names(&evs);
    assert_eq!(
        &got[..5],
        &[
            (0, "miss"),
            (0, "created"),
            (10_000, "idle_timeout"),
            (10_000, "torn_down"),
            (10_000, "miss")
        ],
        "{got:?}"
    );
    // One millisecond earlier, the pipe is used.
    let mut s = ServiceState::new(plan());
    let out = run(&mut s, vec![call(0, "1", "x", "y"), call(9_999, "2", "x", "y")]);
    let evs = events(&out);
    assert_eq!(names(&evs)[2], (9_999, "used"));
}

#[test]
fn a_predicted_pipe_is_created_before_its_call_with_its_lead_time() {
    let mut s = ServiceState::new(plan());
    // Teach the model that `a` always calls `b` (order 1), on many sequences.
    let mut items = Vec::new();
    // Sequences 20 s apart: every pipe idles out (10 s) between them.
    for i in 0..20 {
        let t = i * 20_000;
        items.push(call(t, &format!("s{i}"), "g", "a"));
        items.push(call(t + 5, &format!("s{i}"), "a", "b"));
    }
    let out = run(&mut s, items);
    let evs = events(&out);
    let predicted: Vec<_> = evs
        .iter()
        .filter(|e| e.3 == "created" && e.4 == Value::str("predicted"))
        .collect();
    assert!(!predicted.is_empty(), "{evs:?}");
    let p = predicted[0];
    assert_eq!((p.1.as_str(), p.2.as_str()), ("a", "b"));
    // Its first use carries the lead time: created at the call to `a`, used 5 ms later.
    let first_use = evs
        .iter()
        .find(|e| e.0 > p.0 && e.3 == "used" && e.1 == "a" && e.2 == "b")
        .unwrap();
    assert_eq!(first_use.5, Value::Int(first_use.0 - p.0));
    assert_eq!(first_use.5, Value::Int(5));
    // The pipe row carries the rule's filters.
    let pipe = out
        .iter()
        .find_map(|(_, o, d)| match o {
            Out::Pipe(r) if *d > 0 && r[0] == Value::str("a") => Some(r.clone()),
            _ => None,
        })
        .unwrap();
    assert_eq!(pipe[12], Value::List(vec![Value::str("status = 'ok'")].into()));
}

#[test]
fn hops_are_scored_before_they_are_counted() {
    let mut s = ServiceState::new(plan());
    let out = run(
        &mut s,
        vec![
            call(0, "1", "x", "y"),
            call(1, "2", "x", "y"),
            call(1_000, "3", "x", "y"),
        ],
    );
    let probs: Vec<f64> = out
        .iter()
        .filter_map(|(_, o, _)| match o {
            Out::Hop(r) => r[4].as_f64(),
            _ => None,
        })
        .collect();
    // The first hop sees no counts (uniform over `$`, x, y, given not `$`: 1/2); later hops
    // see the earlier ones and rise.
    assert!((probs[0] - 0.5).abs() < 1e-12, "{probs:?}");
    assert!(probs[1] > probs[0] && probs[2] > probs[1], "{probs:?}");
}

#[test]
fn the_threshold_rises_while_predicted_pipes_go_unused() {
    let mut p = plan();
    p.target_precision = Some(0.9);
    p.threshold = 0.3;
    p.idle_timeout_ms = 500;
    let mut s = ServiceState::new(p);
    // `a` calls `b` or `c` at random-looking alternation, so predicted pipes to one of them
    // often go unused.
    let mut items = Vec::new();
    for i in 0..200 {
        let t = i * 3_000;
        let next = if (i * 7) % 3 == 0 { "b" } else { "c" };
        items.push(call(t, &format!("s{i}"), "g", "a"));
        items.push(call(t + 5, &format!("s{i}"), "a", next));
    }
    let out = run(&mut s, items);
    let thresholds: Vec<f64> = out
        .iter()
        .filter_map(|(_, o, d)| match o {
            Out::Pipe(r) if *d > 0 => r[8].as_f64(),
            _ => None,
        })
        .collect();
    let last = *thresholds.last().unwrap();
    assert!(last > 0.3, "the threshold stayed at {last}");
}

#[test]
fn the_threshold_comes_down_when_pipes_it_did_not_create_would_have_been_used() {
    let mut p = plan();
    p.target_precision = Some(0.9);
    p.threshold = 0.999;
    p.idle_timeout_ms = 500;
    let mut s = ServiceState::new(p);
    // `a` always calls `b` 5 ms after it is called: once the model has learnt it, every
    // sequence at `a` is a good candidate. No pipe is predicted at 0.999 at first, and the
    // demand pipes are torn down between sequences, so only the candidates can show it.
    let mut items = Vec::new();
    for i in 0..100 {
        let t = i * 3_000;
        items.push(call(t, &format!("s{i}"), "g", "a"));
        items.push(call(t + 5, &format!("s{i}"), "a", "b"));
    }
    let out = run(&mut s, items);
    let predicted = out
        .iter()
        .filter(|(_, o, d)| {
            *d > 0 && matches!(o, Out::PipeEvent(r) if r[3] == Value::str("created") && r[4] == Value::str("predicted"))
        })
        .count();
    assert!(predicted > 50, "{predicted} predicted pipes");
    let used_first = out
        .iter()
        .filter(|(_, o, _)| matches!(o, Out::PipeEvent(r) if r[7].as_f64().is_some()))
        .count();
    assert_eq!(used_first, predicted, "every predicted pipe is used");
}

/// The mixture over windows against a from-scratch oracle: each hop's probability equals the
/// fixed-share mixture, under the caller's weights so far, of Kneser–Ney models counted anew
/// from the hops in each window, each conditioned on the sequence going on.
#[test]
fn mixed_windows_match_a_from_scratch_oracle() {
    use crate::model::markov::mixture::FixedShare;
    use crate::model::markov::{Discount, KneserNey, Ngrams, Token};
    use rand::{Rng, SeedableRng};
    use std::collections::{BTreeSet, HashMap};

    let mut p = plan();
    p.window_ms = 10_000;
    p.long_windows_ms = vec![40_000, 120_000];
    p.mix_share = 0.01;
    p.sequence_timeout_ms = 1 << 40;
    let windows = [10_000i64, 40_000, 120_000];
    let discount = Discount::Fixed(0.5);
    for seed in 0..4u64 {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        let services = ["a", "b", "c", "d", "e"];
        // Chains of calls; the preferred next service changes half-way (a regime change).
        let mut items = Vec::new();
        let mut at: Vec<usize> = Vec::new();
        let mut t = 0i64;
        for i in 0..400 {
            t += rng.random_range(1..1_500);
            let k = rng.random_range(0..=at.len());
            if k == at.len() {
                at.push(rng.random_range(0..services.len()));
            }
            let a = at[k];
            let shift = if i < 200 { 1 } else { 3 };
            let b = if rng.random_bool(0.7) {
                (a + shift) % services.len()
            } else {
                rng.random_range(0..services.len())
            };
            items.push(call(t, &format!("s{k}"), services[a], services[b]));
            at[k] = b;
        }
        let mut s = ServiceState::new(p.clone());
        let out = run(&mut s, items.clone());
        let got: Vec<f64> = out
            .iter()
            .filter_map(|(_, o, _)| match o {
                Out::Hop(r) => r[4].as_f64(),
                _ => None,
            })
            .collect();

        // The oracle.
        let mut seen: BTreeSet<String> = BTreeSet::from(["$".to_string()]);
        let mut history: HashMap<String, Vec<Token<String>>> = HashMap::new();
        let mut counted: Vec<(i64, Vec<Token<String>>, String)> = Vec::new();
        let mut mixes: HashMap<String, FixedShare> = HashMap::new();
        let mut want = Vec::new();
        for item in &items {
            let (a, b) = (item.source.to_string(), item.target.to_string());
            seen.insert(a.clone());
            seen.insert(b.clone());
            let h = history
                .entry(item.sequence.to_string())
                .or_insert_with(|| vec![Token::Start, Token::Sym(a.clone())]);
            let context = h.clone();
            let ps: Vec<f64> = windows
                .iter()
                .map(|w| {
                    let mut counts = Ngrams::new(2);
                    for (time, c, n) in &counted {
                        if *time >= item.time - w && *time < item.time {
                            counts.add(c, n, 1).unwrap();
                        }
                    }
                    let model = KneserNey::new(&counts, 1, discount, seen.iter().cloned()).unwrap();
                    let end = model.probability(&context, &"$".to_string());
                    model.probability(&context, &b) / (1.0 - end)
                })
                .collect();
            let mix = mixes
                .entry(a.clone())
                .or_insert_with(|| FixedShare::new(windows.len(), 0.01));
            want.push(mix.mix(&ps));
            mix.update(&ps);
            counted.push((item.time, context, b.clone()));
            *h = vec![h[1].clone(), Token::Sym(b)];
        }
        assert_eq!(got.len(), want.len());
        for (i, (g, w)) in got.iter().zip(&want).enumerate() {
            assert!((g - w).abs() < 1e-9, "seed {seed}, hop {i}: {g} vs the oracle's {w}");
        }
        // The weights learnt: some caller's favour one window.
        assert!(
            mixes.values().any(|m| m.weights().iter().any(|w| *w > 0.5)),
            "seed {seed}"
        );
    }
}
