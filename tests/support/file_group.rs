//! Turns between the former test files, now modules of one test binary (tests/integration.rs).
//!
//! When each file was a binary of its own, cargo ran the files one after another and the
//! tests of one file ran beside each other on libtest's threads. In one binary libtest would
//! run tests of different files at the same time: two files' labs, daemons, pins, containers
//! or registries side by side on a host sized for one (Raft timers on two starved cores). A
//! test that makes any of these enters its file's group first: tests of the same file enter
//! together, a test of another file waits until none of the group runs, and while it waits no
//! new test of the running file enters, so the files take turns. Tests that make nothing of
//! the kind do not enter and run beside anything, as they ran beside their own file's tests.

use std::collections::BTreeMap;
use std::panic::Location;
use std::sync::{Condvar, Mutex, MutexGuard, PoisonError};

/// The file whose tests run (or whose turn it is), how many of them run, and how many tests
/// of each file wait.
#[derive(Debug)]
struct Turn {
    file: Option<&'static str>,
    running: usize,
    waiting: BTreeMap<&'static str, usize>,
}

impl Turn {
    /// Whether a test of `file` may run now: it is nobody's turn, or `file`'s and either the
    /// test already waited for it or no test of another file waits.
    fn may_enter(&self, file: &str, waited: bool) -> bool {
        match self.file {
            None => true,
            Some(turn) if turn == file => waited || self.waiting.keys().all(|w| *w == file),
            Some(_) => false,
        }
    }

    /// The turn after `file`'s last test left: a waiting other file's, else anybody's.
    fn next(&self, file: &str) -> Option<&'static str> {
        self.waiting.keys().copied().find(|w| *w != file)
    }
}

/// The groups of one binary ([`GROUPS`]; the tests below make their own).
pub struct FileGroups {
    turn: Mutex<Turn>,
    changed: Condvar,
}

/// The groups of this binary's tests.
pub static GROUPS: FileGroups = FileGroups::new();

impl FileGroups {
    pub const fn new() -> Self {
        Self {
            turn: Mutex::new(Turn {
                file: None,
                running: 0,
                waiting: BTreeMap::new(),
            }),
            changed: Condvar::new(),
        }
    }

    /// Nothing panics while the lock is held, so the state is never left half updated and a
    /// poisoned lock is taken as it is.
    fn turn(&self) -> MutexGuard<'_, Turn> {
        self.turn.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Enters `file`'s group, after waiting for the other files' tests to leave theirs.
    pub fn enter(&self, file: &'static str) -> FileGroup<'_> {
        let mut turn = self.turn();
        if !turn.may_enter(file, false) {
            *turn.waiting.entry(file).or_insert(0) += 1;
            loop {
                turn = self
                    .changed
                    .wait(turn)
                    .unwrap_or_else(PoisonError::into_inner);
                if turn.may_enter(file, true) {
                    break;
                }
            }
            if let Some(waiting) = turn.waiting.get_mut(file) {
                *waiting -= 1;
                if *waiting == 0 {
                    turn.waiting.remove(file);
                }
            }
        }
        turn.file = Some(file);
        turn.running += 1;
        FileGroup { groups: self, file }
    }

    /// How many tests of `file` wait for its turn.
    pub fn waiting(&self, file: &str) -> usize {
        self.turn().waiting.get(file).copied().unwrap_or(0)
    }

    /// Whose turn it is, and how many of its tests run.
    pub fn running(&self) -> (Option<&'static str>, usize) {
        let turn = self.turn();
        (turn.file, turn.running)
    }
}

/// A test's place in its file's group. Dropping it (also while a failing test unwinds)
/// leaves the group; the last test to leave hands the turn on.
#[must_use = "the group is left when this is dropped"]
pub struct FileGroup<'a> {
    groups: &'a FileGroups,
    file: &'static str,
}

impl Drop for FileGroup<'_> {
    fn drop(&mut self) {
        let mut turn = self.groups.turn();
        turn.running -= 1;
        if turn.running == 0 {
            turn.file = turn.next(self.file);
            self.groups.changed.notify_all();
        }
    }
}

/// Enters the group of the calling test's file (the caller's `file!()`); for a test that
/// makes a lab, namespaces, daemons, BPF pins, containers or a registry.
#[track_caller]
pub fn file_group() -> FileGroup<'static> {
    GROUPS.enter(Location::caller().file())
}

#[cfg(test)]
mod tests {
    use std::sync::mpsc;
    use std::thread;
    use std::time::{Duration, Instant};

    use super::FileGroups;

    /// Bound of every wait below, so a broken lock fails the test instead of hanging it.
    const BOUND: Duration = Duration::from_secs(30);

    fn wait_until(what: &str, done: impl Fn() -> bool) {
        let deadline = Instant::now() + BOUND;
        while !done() {
            assert!(Instant::now() < deadline, "{what} within {BOUND:?}");
            thread::sleep(Duration::from_millis(5));
        }
    }

    #[test]
    fn tests_of_one_file_run_together_and_another_file_waits_for_all_of_them() {
        let groups = &FileGroups::new();
        let a1 = groups.enter("a.rs");
        let a2 = groups.enter("a.rs");
        assert_eq!(groups.running(), (Some("a.rs"), 2));
        thread::scope(|s| {
            let (entered, seen) = mpsc::channel();
            s.spawn(move || {
                let _b = groups.enter("b.rs");
                entered.send(groups.running()).expect("send");
            });
            wait_until("b.rs waits", || groups.waiting("b.rs") == 1);
            drop(a1);
            assert_eq!(groups.running(), (Some("a.rs"), 1));
            assert_eq!(groups.waiting("b.rs"), 1, "b.rs entered beside a.rs");
            drop(a2);
            let running = seen.recv_timeout(BOUND).expect("b.rs entered");
            assert_eq!(running, (Some("b.rs"), 1));
        });
        assert_eq!(groups.running(), (None, 0));
    }

    #[test]
    fn a_waiting_file_goes_before_new_tests_of_the_running_file() {
        let groups = &FileGroups::new();
        let a1 = groups.enter("a.rs");
        thread::scope(|s| {
            let (entered, order) = mpsc::channel();
            let to_b = entered.clone();
            s.spawn(move || {
                let _b = groups.enter("b.rs");
                to_b.send("b.rs").expect("send");
            });
            wait_until("b.rs waits", || groups.waiting("b.rs") == 1);
            s.spawn(move || {
                let _a2 = groups.enter("a.rs");
                entered.send("a.rs").expect("send");
            });
            wait_until("the second a.rs test waits", || groups.waiting("a.rs") == 1);
            drop(a1);
            let first = order.recv_timeout(BOUND).expect("one entered");
            let second = order.recv_timeout(BOUND).expect("the other entered");
            assert_eq!([first, second], ["b.rs", "a.rs"]);
        });
        assert_eq!(groups.running(), (None, 0));
    }

    #[test]
    fn a_failing_test_leaves_its_group() {
        let groups = &FileGroups::new();
        let failed = thread::scope(|s| {
            s.spawn(|| {
                let _a = groups.enter("a.rs");
                panic!("a failing test of a.rs");
            })
            .join()
        });
        assert!(failed.is_err());
        assert_eq!(groups.running(), (None, 0));
        let _b = groups.enter("b.rs");
        assert_eq!(groups.running(), (Some("b.rs"), 1));
    }
}
