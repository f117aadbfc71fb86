//! Pure decisions: whether the fleet fails over, where to, whether a record is new,
//! and when one agent's own clock says the active replica has been down long enough.
//!
//! Role: everything here is a function of its arguments (no I/O, no clock read), so it
//! is tested over tables. Failure modes: none at run time; a bad quorum spelling is a
//! [`DecideError`].

use crate::model::{ActiveRecord, AgentView, ReplicaId};
use std::time::{Duration, Instant};

/// Errors of this module.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecideError {
    /// Not `majority` nor `any`.
    #[error("Invalid quorum {0:?}: expected \"majority\" or \"any\"")]
    BadQuorum(String),
}

/// How many live views must say `unreachable_long_enough` before the fleet fails over.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Quorum {
    /// More than half of the live views (the default): one client with a broken
    /// network cannot fail the whole fleet over.
    #[default]
    Majority,
    /// Any one agent (its own view) is enough.
    Any,
}

impl std::str::FromStr for Quorum {
    type Err = DecideError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "majority" => Ok(Quorum::Majority),
            "any" => Ok(Quorum::Any),
            _ => Err(DecideError::BadQuorum(s.into())),
        }
    }
}

/// Why an agent does not run for the failover.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Stay {
    /// This agent itself does not (yet) see the active replica down for
    /// `failover_after`: only an agent that sees the failure runs for election.
    NotLongEnough,
    /// This agent follows an older generation than the active record: it must catch
    /// up first (its opinion is about a replica the fleet has left).
    Behind {
        /// The generation this agent follows.
        own: u64,
        /// The active record's.
        active: u64,
    },
    /// Too few live views agree.
    NoQuorum {
        /// Views (this one included) that follow the active generation and say
        /// `unreachable_long_enough`.
        votes: usize,
        /// Live views (this one included).
        live: usize,
        /// Votes needed.
        needed: usize,
    },
    /// The volume has no other member to move to.
    NoOtherReplica,
}

/// What [`decide_failover`] says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Keep the active replica.
    Stay(Stay),
    /// Run for the election ([`crate::AgentSession::try_failover`]) from
    /// `from_generation` to `to`.
    Failover {
        /// The active generation to move from (the CAS guard).
        from_generation: u64,
        /// The next member after the active one.
        to: ReplicaId,
    },
}

/// The member after `current` in `members` (cyclic); the first member if `current`
/// is not one; `None` if there is no other member.
pub fn next_replica(members: &[ReplicaId], current: &ReplicaId) -> Option<ReplicaId> {
    let pos = members.iter().position(|m| m == current);
    let n = members.len();
    let next = match pos {
        Some(i) => (1..n)
            .map(|k| &members[(i + k) % n])
            .find(|m| *m != current),
        None => members.first(),
    };
    next.cloned()
}

/// Votes needed among `live` views.
pub fn votes_needed(quorum: Quorum, live: usize) -> usize {
    match quorum {
        Quorum::Majority => live / 2 + 1,
        Quorum::Any => 1,
    }
}

/// Should this agent (`own`) run for the failover of `active`, given every live view
/// read from etcd (`views`; `own` replaces an entry with the same agent name, or is
/// added)? Only votes from views that follow `active.generation` count; every live
/// view counts in the denominator.
pub fn decide_failover(
    active: &ActiveRecord,
    members: &[ReplicaId],
    views: &[AgentView],
    own: &AgentView,
    quorum: Quorum,
) -> Decision {
    if own.generation < active.generation {
        return Decision::Stay(Stay::Behind {
            own: own.generation,
            active: active.generation,
        });
    }
    if !own.unreachable_long_enough {
        return Decision::Stay(Stay::NotLongEnough);
    }
    let mut live: Vec<&AgentView> = views.iter().filter(|v| v.agent != own.agent).collect();
    live.push(own);
    let votes = live
        .iter()
        .filter(|v| v.generation == active.generation && v.unreachable_long_enough)
        .count();
    let needed = votes_needed(quorum, live.len());
    if votes < needed {
        return Decision::Stay(Stay::NoQuorum {
            votes,
            live: live.len(),
            needed,
        });
    }
    match next_replica(members, &active.replica) {
        Some(to) => Decision::Failover {
            from_generation: active.generation,
            to,
        },
        None => Decision::Stay(Stay::NoOtherReplica),
    }
}

/// Remembers the highest generation seen and admits only higher ones, so a stale read
/// or a rewritten key can never send an agent back.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GenerationFilter {
    highest: u64,
}

impl GenerationFilter {
    /// A filter that has seen nothing.
    pub fn new() -> Self {
        Self::default()
    }

    /// A filter that has already seen `generation` (e.g. from the agent's state file).
    pub fn starting_at(generation: u64) -> Self {
        GenerationFilter {
            highest: generation,
        }
    }

    /// The highest generation admitted.
    pub fn highest(&self) -> u64 {
        self.highest
    }

    /// `true` if `record` is newer than anything admitted (then remembered).
    pub fn admit(&mut self, record: &ActiveRecord) -> bool {
        if record.generation <= self.highest {
            return false;
        }
        self.highest = record.generation;
        true
    }
}

/// One agent's own judgement of "unreachable for `failover_after`", on its own
/// monotonic clock (never another node's).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnreachableClock {
    failover_after: Duration,
    since: Option<Instant>,
}

impl UnreachableClock {
    /// A clock with nothing seen yet.
    pub fn new(failover_after: Duration) -> Self {
        UnreachableClock {
            failover_after,
            since: None,
        }
    }

    /// Record a probe of the active replica at `now`; returns `unreachable_long_enough`.
    /// A reachable probe resets it; so does a new generation ([`Self::reset`]).
    pub fn observe(&mut self, reachable: bool, now: Instant) -> bool {
        if reachable {
            self.since = None;
            return false;
        }
        let since = *self.since.get_or_insert(now);
        now.saturating_duration_since(since) >= self.failover_after
    }

    /// Forget the outage (the active replica changed).
    pub fn reset(&mut self) {
        self.since = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Reason;

    fn r(h: &str) -> ReplicaId {
        ReplicaId::new(h, "/v")
    }

    fn active(h: &str, generation: u64) -> ActiveRecord {
        ActiveRecord {
            replica: r(h),
            generation,
            decided_by: "x".into(),
            decided_at_ms: 0,
            reason: Reason::Seed,
            previous: None,
            promote: None,
        }
    }

    fn v(agent: &str, generation: u64, long: bool) -> AgentView {
        AgentView {
            agent: agent.into(),
            mounted: Some(r("a")),
            generation,
            active_reachable: !long,
            unreachable_long_enough: long,
        }
    }

    #[test]
    fn decide_failover_over_a_table() {
        let members = [r("a"), r("b")];
        let act = active("a", 3);
        let fail = Decision::Failover {
            from_generation: 3,
            to: r("b"),
        };
        #[allow(clippy::type_complexity)]
        let table: &[(&str, Vec<AgentView>, AgentView, Quorum, Decision)] = &[
            (
                "3 of 3 agree",
                vec![v("c1", 3, true), v("c2", 3, true), v("c3", 3, true)],
                v("c1", 3, true),
                Quorum::Majority,
                fail.clone(),
            ),
            (
                "2 of 3 agree: a majority",
                vec![v("c1", 3, true), v("c2", 3, true), v("c3", 3, false)],
                v("c2", 3, true),
                Quorum::Majority,
                fail.clone(),
            ),
            (
                "1 of 3 (a client with a broken network) is a minority",
                vec![v("c1", 3, true), v("c2", 3, false), v("c3", 3, false)],
                v("c1", 3, true),
                Quorum::Majority,
                Decision::Stay(Stay::NoQuorum {
                    votes: 1,
                    live: 3,
                    needed: 2,
                }),
            ),
            (
                "1 of 3 with quorum = any",
                vec![v("c1", 3, true), v("c2", 3, false), v("c3", 3, false)],
                v("c1", 3, true),
                Quorum::Any,
                fail.clone(),
            ),
            (
                "1 of 2 is not a majority",
                vec![v("c1", 3, true), v("c2", 3, false)],
                v("c1", 3, true),
                Quorum::Majority,
                Decision::Stay(Stay::NoQuorum {
                    votes: 1,
                    live: 2,
                    needed: 2,
                }),
            ),
            (
                "own view not yet published still counts, once",
                vec![v("c2", 3, true), v("c3", 3, false)],
                v("c1", 3, true),
                Quorum::Majority,
                fail.clone(),
            ),
            (
                "the own view read back stale from etcd is replaced by the fresh one",
                vec![v("c1", 3, false), v("c2", 3, false)],
                v("c1", 3, true),
                Quorum::Majority,
                Decision::Stay(Stay::NoQuorum {
                    votes: 1,
                    live: 2,
                    needed: 2,
                }),
            ),
            (
                "votes about an older generation do not count",
                vec![v("c1", 3, true), v("c2", 2, true), v("c3", 2, true)],
                v("c1", 3, true),
                Quorum::Majority,
                Decision::Stay(Stay::NoQuorum {
                    votes: 1,
                    live: 3,
                    needed: 2,
                }),
            ),
            (
                "an agent that does not itself see it long enough stays",
                vec![v("c1", 3, true), v("c2", 3, true), v("c3", 3, false)],
                v("c3", 3, false),
                Quorum::Any,
                Decision::Stay(Stay::NotLongEnough),
            ),
            (
                "an agent behind the active generation stays",
                vec![v("c1", 2, true)],
                v("c1", 2, true),
                Quorum::Any,
                Decision::Stay(Stay::Behind { own: 2, active: 3 }),
            ),
            (
                "a single agent is its own majority",
                vec![],
                v("c1", 3, true),
                Quorum::Majority,
                fail.clone(),
            ),
        ];
        for (what, views, own, quorum, want) in table {
            assert_eq!(
                &decide_failover(&act, &members, views, own, *quorum),
                want,
                "{what}"
            );
        }
        assert_eq!(
            decide_failover(&act, &[r("a")], &[], &v("c1", 3, true), Quorum::Any),
            Decision::Stay(Stay::NoOtherReplica)
        );
    }

    #[test]
    fn next_replica_is_cyclic_and_skips_the_current_one() {
        let m = [r("a"), r("b"), r("c")];
        let table = [
            ("a", Some("b")),
            ("b", Some("c")),
            ("c", Some("a")),
            ("z", Some("a")),
        ];
        for (cur, want) in table {
            assert_eq!(next_replica(&m, &r(cur)), want.map(r), "{cur}");
        }
        assert_eq!(next_replica(&[r("a")], &r("a")), None);
        assert_eq!(next_replica(&[], &r("a")), None);
        assert_eq!(next_replica(&[r("a"), r("a")], &r("a")), None);
    }

    #[test]
    fn quorum_parses_and_counts() {
        assert_eq!("majority".parse::<Quorum>(), Ok(Quorum::Majority));
        assert_eq!("any".parse::<Quorum>(), Ok(Quorum::Any));
        assert!("most".parse::<Quorum>().is_err());
        let table = [(1, 1), (2, 2), (3, 2), (4, 3), (5, 3)];
        for (live, needed) in table {
            assert_eq!(votes_needed(Quorum::Majority, live), needed, "{live}");
            assert_eq!(votes_needed(Quorum::Any, live), 1);
        }
    }

    #[test]
    fn the_generation_filter_never_goes_back_nor_repeats() {
        let mut f = GenerationFilter::new();
        let steps = [
            (1, true),
            (1, false),
            (3, true),
            (2, false),
            (3, false),
            (4, true),
        ];
        for (g, want) in steps {
            assert_eq!(f.admit(&active("a", g)), want, "generation {g}");
        }
        assert_eq!(f.highest(), 4);
        let mut f = GenerationFilter::starting_at(2);
        assert!(!f.admit(&active("a", 2)));
        assert!(f.admit(&active("a", 3)));
    }

    #[test]
    fn the_unreachable_clock_needs_an_unbroken_outage() {
        let t0 = Instant::now();
        let s = Duration::from_secs;
        let mut c = UnreachableClock::new(s(300));
        let table = [
            (0, false, false),
            (100, false, false),
            (299, false, false),
            (300, false, true),
            (301, true, false),
            (302, false, false),
            (601, false, false),
            (602, false, true),
        ];
        for (at, reachable, want) in table {
            assert_eq!(c.observe(reachable, t0 + s(at)), want, "at {at} s");
        }
        c.reset();
        assert!(!c.observe(false, t0 + s(700)));
    }
}
