//! Who is acting, for the `"by"` field of every entry body: `user:ID` for a person (set by
//! the HTTP layer around each authenticated write), `cli` for a command run on the data
//! directory, `system` for the collector itself (the rule engine, start-up).
//!
//! The actor is held per thread for the duration of a closure, so that every store function
//! that appends to the log records it without each having to pass it along; the HTTP layer
//! runs each write on one blocking thread inside [`acting_as`].

use std::cell::RefCell;

thread_local! {
    static ACTOR: RefCell<Option<String>> = const { RefCell::new(None) };
}

/// Runs `f` with `actor` as the acting party of every entry appended on this thread.
pub fn acting_as<T>(actor: &str, f: impl FnOnce() -> T) -> T {
    struct Restore(Option<String>);
    impl Drop for Restore {
        fn drop(&mut self) {
            let previous = self.0.take();
            ACTOR.with(|a| *a.borrow_mut() = previous);
        }
    }
    let previous = ACTOR.with(|a| a.borrow_mut().replace(actor.to_owned()));
    let _restore = Restore(previous);
    f()
}

/// The acting party on this thread: what [`acting_as`] set, else `system`.
pub fn current_actor() -> String {
    ACTOR
        .with(|a| a.borrow().clone())
        .unwrap_or_else(|| "system".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_actor_is_scoped_and_nests() {
        assert_eq!(current_actor(), "system");
        acting_as("user:1", || {
            assert_eq!(current_actor(), "user:1");
            acting_as("cli", || assert_eq!(current_actor(), "cli"));
            assert_eq!(current_actor(), "user:1");
        });
        assert_eq!(current_actor(), "system");
    }
}
