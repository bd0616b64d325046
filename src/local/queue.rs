//! The local runner's queue: users take turns.
//!
//! First come, first served across users let one user's hundred runs hold everyone else's
//! behind them. Here each user has a queue of their own, and a free slot goes to the user
//! served least recently (a user never served, or back after their queue emptied, goes
//! first; among those, the one who came first): with users A (flooding), B and C waiting,
//! slots go A, B, C, A, B, C... and B's one run never waits behind more than one of A's per
//! round. A user with `RUNS_MAX_ACTIVE_PER_USER` runs executing is skipped until one ends, so
//! their runs never take every slot while another user's wait; a slot is never left idle
//! while some user could use it.
//!
//! Pure bookkeeping (no I/O, no clock): the dispatcher of `super` calls it under a lock.

use std::collections::{HashMap, VecDeque};

/// One user's place in the queue.
#[derive(Debug)]
struct Turns {
    waiting: VecDeque<i64>,
    executing: usize,
    /// When the user was last given a slot (a sequence number; 0: never since they came).
    last_served: u64,
    /// When the user came (a sequence number), to break ties among the never served.
    arrived: u64,
}

/// The queue of runs waiting for a slot, by user.
#[derive(Debug)]
pub struct FairQueue {
    /// Runs of one user executing at once (0: no limit).
    max_active: usize,
    users: HashMap<i64, Turns>,
    served: u64,
    arrivals: u64,
}

impl FairQueue {
    /// An empty queue letting each user execute at most `max_active` runs (0: no limit).
    pub fn new(max_active: usize) -> Self {
        Self {
            max_active,
            users: HashMap::new(),
            served: 0,
            arrivals: 0,
        }
    }

    fn may_execute(&self, t: &Turns) -> bool {
        self.max_active == 0 || t.executing < self.max_active
    }

    /// Queues run `run` of `user` behind that user's other waiting runs.
    pub fn push(&mut self, user: i64, run: i64) {
        let arrivals = &mut self.arrivals;
        self.users
            .entry(user)
            .or_insert_with(|| {
                *arrivals += 1;
                Turns {
                    waiting: VecDeque::new(),
                    executing: 0,
                    last_served: 0,
                    arrived: *arrivals,
                }
            })
            .waiting
            .push_back(run);
    }

    /// The run that gets the next free slot, as `(user, run)`, now counted as executing; `None`
    /// when no waiting run may execute (nothing waits, or only users at their limit).
    pub fn take_next(&mut self) -> Option<(i64, i64)> {
        let (&user, _) = self
            .users
            .iter()
            .filter(|(_, t)| !t.waiting.is_empty() && self.may_execute(t))
            .min_by_key(|(_, t)| (t.last_served, t.arrived))?;
        self.served += 1;
        let served = self.served;
        let t = self.users.get_mut(&user)?;
        let run = t.waiting.pop_front()?;
        t.executing += 1;
        t.last_served = served;
        Some((user, run))
    }

    /// A run of `user` that [`FairQueue::take_next`] handed out has ended.
    pub fn finished(&mut self, user: i64) {
        if let Some(t) = self.users.get_mut(&user) {
            t.executing = t.executing.saturating_sub(1);
        }
        self.forget_if_idle(user);
    }

    /// Takes run `run` of `user` out of the queue (cancelled before it started); whether it
    /// was waiting.
    pub fn remove(&mut self, user: i64, run: i64) -> bool {
        let Some(t) = self.users.get_mut(&user) else {
            return false;
        };
        let before = t.waiting.len();
        t.waiting.retain(|r| *r != run);
        let removed = t.waiting.len() != before;
        self.forget_if_idle(user);
        removed
    }

    /// A user with nothing waiting or executing leaves; coming back, they are new again.
    fn forget_if_idle(&mut self, user: i64) {
        if self
            .users
            .get(&user)
            .is_some_and(|t| t.waiting.is_empty() && t.executing == 0)
        {
            self.users.remove(&user);
        }
    }

    /// Runs waiting (all users).
    pub fn waiting(&self) -> usize {
        self.users.values().map(|t| t.waiting.len()).sum()
    }

    /// Runs executing (all users).
    pub fn executing(&self) -> usize {
        self.users.values().map(|t| t.executing).sum()
    }

    /// Runs of `user` executing.
    pub fn executing_of(&self, user: i64) -> usize {
        self.users.get(&user).map_or(0, |t| t.executing)
    }

    /// Whether a run of `user` queued now would get one of `slots` at once: a slot is free
    /// (a run that could take it would have) and the user is below the limit.
    pub fn starts_at_once(&self, user: i64, slots: usize) -> bool {
        self.executing() < slots
            && (self.max_active == 0 || self.executing_of(user) < self.max_active)
    }

    /// Waiting runs whose user is at the limit (the rest wait for a slot).
    pub fn waiting_for_user_limit(&self) -> usize {
        self.users
            .values()
            .filter(|t| !self.may_execute(t))
            .map(|t| t.waiting.len())
            .sum()
    }

    /// How many waiting runs would get a slot before a run of `user` queued now, if users took
    /// turns with no limit and nobody else came: the user's own waiting runs, plus, of every
    /// other user, as many as the rounds before this one (one more for a user ahead of `user`
    /// in a round).
    pub fn ahead_of_new(&self, user: i64) -> usize {
        let (own, key) = match self.users.get(&user) {
            Some(t) => (t.waiting.len(), (t.last_served, t.arrived)),
            None => (0, (0, self.arrivals + 1)),
        };
        own + self
            .users
            .iter()
            .filter(|(u, _)| **u != user)
            .map(|(_, t)| {
                let first = (t.last_served, t.arrived) < key;
                t.waiting.len().min(own + usize::from(first))
            })
            .sum::<usize>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: i64 = 1;
    const B: i64 = 2;
    const C: i64 = 3;

    /// Hands out every slot in turn, ending each run at once: the order users are served in.
    fn drain(q: &mut FairQueue) -> Vec<(i64, i64)> {
        let mut order = Vec::new();
        while let Some((user, run)) = q.take_next() {
            order.push((user, run));
            q.finished(user);
        }
        order
    }

    #[test]
    fn three_users_one_flooding_take_turns() {
        let mut q = FairQueue::new(0);
        for run in 1..=6 {
            q.push(A, run);
        }
        q.push(B, 101);
        q.push(C, 201);
        q.push(B, 102);
        assert_eq!(q.waiting(), 9);
        // A came first, so A first; then B and C, and A only once per round.
        assert_eq!(
            q.ahead_of_new(C),
            5,
            "A1, B1, C1 (C's own), A2, B2 before C's next"
        );
        let order = drain(&mut q);
        assert_eq!(
            order,
            [
                (A, 1),
                (B, 101),
                (C, 201),
                (A, 2),
                (B, 102),
                (A, 3),
                (A, 4),
                (A, 5),
                (A, 6)
            ]
        );
        assert_eq!((q.waiting(), q.executing()), (0, 0));
    }

    #[test]
    fn a_user_just_served_goes_behind_those_who_came_meanwhile() {
        // A's first run is executing (it was alone); B and C come while A floods.
        let mut q = FairQueue::new(0);
        q.push(A, 1);
        assert_eq!(q.take_next(), Some((A, 1)));
        for run in 2..=4 {
            q.push(A, run);
        }
        q.push(B, 101);
        q.push(C, 201);
        assert_eq!(
            q.ahead_of_new(B),
            3,
            "B1, C1 (never served), A2, then B's next"
        );
        q.finished(A);
        assert_eq!(drain(&mut q), [(B, 101), (C, 201), (A, 2), (A, 3), (A, 4)]);
    }

    #[test]
    fn the_per_user_limit_leaves_slots_to_others_and_is_counted() {
        let mut q = FairQueue::new(1);
        for run in 1..=3 {
            q.push(A, run);
        }
        assert!(q.starts_at_once(A, 2));
        assert_eq!(q.take_next(), Some((A, 1)));
        assert_eq!(q.take_next(), None, "A is at its limit; nothing else waits");
        assert!(!q.starts_at_once(A, 2) && q.starts_at_once(B, 2));
        assert_eq!(q.waiting_for_user_limit(), 2);
        q.push(B, 101);
        assert_eq!(q.take_next(), Some((B, 101)), "a free slot goes to B");
        assert_eq!((q.executing(), q.executing_of(A)), (2, 1));
        q.finished(A);
        assert_eq!(q.take_next(), Some((A, 2)));
        // Cancelled while waiting: gone from the queue, and counted nowhere.
        assert!(q.remove(A, 3));
        assert!(!q.remove(A, 3));
        assert_eq!((q.waiting(), q.waiting_for_user_limit()), (0, 0));
        q.finished(A);
        q.finished(B);
        assert!(q.users.is_empty(), "idle users are forgotten");
    }
}
