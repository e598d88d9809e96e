//! Stateless stages with several outputs of different types: `input: Collection<D>` → three
//! collections `A`, `B` and `C`, each output update at its input record's time and with its
//! multiplicity (differential's `flat_map`, into three collections at once). `B` is for counts
//! (a stage's counters): equal records at one time are summed into one update within a message,
//! so a counter bumped for every event costs an addition, not an update per event.
//!
//! A stage that tags its records with their kind and splits them (`render::split`) moves each
//! record twice more after making it: into its part (timely's `partition`, which also groups a
//! message's records by part) and out of its tag (one `flat_map` per part). Here the stage's
//! logic writes each record once, into its own output's container.

use differential_dataflow::{AsCollection, VecCollection};
use timely::dataflow::channels::pact::Pipeline;
use timely::dataflow::operators::generic::builder_rc::OperatorBuilder;
use timely::dataflow::operators::generic::OutputBuilder;
use timely::progress::operate::FrontierInterest;

use crate::render::pending::UpdateBuilder;

/// Where a record's logic writes its outputs: each is sent at the record's time and with its
/// multiplicity (`b`'s summed, see the module's doc).
pub struct Fan<A, B, C> {
    pub a: Vec<A>,
    pub b: Vec<B>,
    pub c: Vec<C>,
}

/// How many of the latest kept `b` updates an update is compared with before it is kept itself:
/// a stage's counters are a few records, bumped at the times of a message's records, which come
/// grouped by time.
pub const SUM_WINDOW: usize = 16;

/// `b` updates kept before they are sent.
pub const SUM_AT: usize = 1024;

/// One output collection.
type Of<'s, D> = VecCollection<'s, u64, D, isize>;

/// Applies `logic` to every record of `input`, in an operator named `name`; what it writes to
/// `a`, `b` and `c` becomes the three collections returned.
///
/// `b`'s updates are summed per message as they come: each is added to an equal record at the
/// same time among the last [`SUM_WINDOW`] kept, else kept; they are sent at the message's end,
/// or once [`SUM_AT`] are kept.
pub fn fan_out<'s, D, A, B, C>(
    input: VecCollection<'s, u64, D, isize>,
    name: &str,
    mut logic: impl FnMut(D, &mut Fan<A, B, C>) + 'static,
) -> (Of<'s, A>, Of<'s, B>, Of<'s, C>)
where
    D: Clone + 'static,
    A: Clone + 'static,
    B: Clone + PartialEq + 'static,
    C: Clone + 'static,
{
    let mut builder = OperatorBuilder::new(name.to_string(), input.inner.scope());
    let mut input = builder.new_input(input.inner, Pipeline);
    // The operator holds nothing back, so it need not hear of frontier changes.
    builder.set_notify_for(0, FrontierInterest::Never);
    let (a_out, a) = builder.new_output();
    let (b_out, b) = builder.new_output();
    let (c_out, c) = builder.new_output();
    let mut outputs = (
        OutputBuilder::<u64, UpdateBuilder<A>>::from(a_out),
        OutputBuilder::<u64, UpdateBuilder<B>>::from(b_out),
        OutputBuilder::<u64, UpdateBuilder<C>>::from(c_out),
    );
    builder.build(move |_initial| {
        let mut fan = Fan {
            a: Vec::new(),
            b: Vec::new(),
            c: Vec::new(),
        };
        // `b`'s updates being summed.
        let mut sums: Vec<(B, u64, isize)> = Vec::new();
        move |_frontiers| {
            let mut handles = (outputs.0.activate(), outputs.1.activate(), outputs.2.activate());
            input.for_each_stamp(|cap, data| {
                let mut sessions = (
                    handles.0.session(&cap),
                    handles.1.session(&cap),
                    handles.2.session(&cap),
                );
                for (d, t, r) in data.flat_map(|batch| batch.drain(..)) {
                    logic(d, &mut fan);
                    sessions.0.give_iterator(fan.a.drain(..).map(|x| (x, t, r)));
                    for b in fan.b.drain(..) {
                        let recent = sums.iter_mut().rev().take(SUM_WINDOW);
                        match recent.into_iter().find(|(x, u, _)| *u == t && *x == b) {
                            Some(sum) => sum.2 += r,
                            None => sums.push((b, t, r)),
                        }
                    }
                    if sums.len() >= SUM_AT {
                        sessions.1.give_iterator(sums.drain(..).filter(|s| s.2 != 0));
                    }
                    sessions.2.give_iterator(fan.c.drain(..).map(|x| (x, t, r)));
                }
                sessions.1.give_iterator(sums.drain(..).filter(|s| s.2 != 0));
            });
        }
    });
    (a.as_collection(), b.as_collection(), c.as_collection())
}

#[cfg(test)]
mod tests {
    use differential_dataflow::input::Input;
    use timely::dataflow::operators::capture::{Capture, Extract};

    use super::*;

    /// The updates captured from a stream, sorted.
    fn flat<D: Ord>(captured: Vec<(u64, Vec<D>)>) -> Vec<D> {
        let mut v: Vec<D> = captured.into_iter().flat_map(|(_, d)| d).collect();
        v.sort();
        v
    }

    /// Updates with equal data and time summed into one (dropping those that sum to zero).
    fn summed<D: Ord>(mut updates: Vec<(D, u64, isize)>) -> Vec<(D, u64, isize)> {
        differential_dataflow::consolidation::consolidate_updates(&mut updates);
        updates
    }

    /// Each output holds exactly what the logic wrote for each record, at the record's time and
    /// with its multiplicity (`b` as the same collection, its updates summed), for any number of
    /// workers; the oracle is a plain loop.
    #[test]
    fn each_output_gets_what_the_logic_wrote_at_its_records_time_and_diff() {
        let records: Vec<(i64, u64, isize)> = (0..500)
            .map(|i| ((i * 37) % 101 - 50, (i % 13) as u64, [1, 2, -1][i as usize % 3]))
            .collect();
        // Oracle: per record, `a` its double, `b` its digits as text when positive, `c` a unit
        // for every multiple of 5 (twice).
        let logic = |x: i64, fan: &mut Fan<i64, String, ()>| {
            fan.a.push(2 * x);
            if x > 0 {
                fan.b.extend(x.to_string().chars().map(String::from));
            }
            if x % 5 == 0 {
                fan.c.extend([(), ()]);
            }
        };
        let mut expected = (Vec::new(), Vec::new(), Vec::new());
        for (x, t, r) in &records {
            let mut fan = Fan {
                a: Vec::new(),
                b: Vec::new(),
                c: Vec::new(),
            };
            logic(*x, &mut fan);
            expected.0.extend(fan.a.into_iter().map(|v| (v, *t, *r)));
            expected.1.extend(fan.b.into_iter().map(|v| (v, *t, *r)));
            expected.2.extend(fan.c.into_iter().map(|v| (v, *t, *r)));
        }
        expected.0.sort();
        expected.1.sort();
        expected.2.sort();
        for workers in [1, 2, 4] {
            let records = records.clone();
            let (sa, ra) = std::sync::mpsc::channel();
            let (sb, rb) = std::sync::mpsc::channel();
            let (sc, rc) = std::sync::mpsc::channel();
            let (sa, sb, sc) = (
                std::sync::Mutex::new(sa),
                std::sync::Mutex::new(sb),
                std::sync::Mutex::new(sc),
            );
            timely::execute(timely::Config::process(workers), move |worker| {
                let (index, peers) = (worker.index(), worker.peers());
                let mut input = worker.dataflow::<u64, _, _>(|scope| {
                    let (input, coll) = scope.new_collection::<i64, isize>();
                    let (a, b, c) = fan_out(coll, "FanOutTest", logic);
                    a.inner.capture_into(sa.lock().unwrap().clone());
                    b.inner.capture_into(sb.lock().unwrap().clone());
                    c.inner.capture_into(sc.lock().unwrap().clone());
                    input
                });
                for (i, (x, t, r)) in records.iter().enumerate() {
                    if i % peers == index {
                        input.update_at(*x, *t, *r);
                    }
                }
            })
            .unwrap();
            assert_eq!(flat(ra.extract()), expected.0, "{workers} workers");
            assert_eq!(
                summed(flat(rb.extract())),
                summed(expected.1.clone()),
                "{workers} workers"
            );
            assert_eq!(flat(rc.extract()), expected.2, "{workers} workers");
        }
    }
}
