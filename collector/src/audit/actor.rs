//! Who is acting, for the `"by"` field of every entry body: `user:ID` for a person (set by
//! the HTTP layer around each authenticated write), `cli` for a command run on the data
//! directory, `system` for the collector itself (the rule engine, start-up), `demo` for the
//! demo's scripted steps. When the person used an API token, its id goes along as
//! `"via_token"`, so that an action taken with a token someone else issued (the admin's for an
//! inspector, say) can be traced to that issuance.
//!
//! The actor is held per thread for the duration of a closure, so that every store function
//! that appends to the log records it without each having to pass it along; the HTTP layer
//! runs each write on one blocking thread inside [`acting`].

use std::cell::RefCell;

/// The acting party of a write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Actor {
    /// `user:ID`, `cli`, `system` or `demo`.
    pub by: String,
    /// The API token used, if any.
    pub token: Option<i64>,
}

thread_local! {
    static ACTOR: RefCell<Option<Actor>> = const { RefCell::new(None) };
}

/// Runs `f` with `actor` as the acting party of every entry appended on this thread.
pub fn acting<T>(actor: Actor, f: impl FnOnce() -> T) -> T {
    struct Restore(Option<Actor>);
    impl Drop for Restore {
        fn drop(&mut self) {
            let previous = self.0.take();
            ACTOR.with(|a| *a.borrow_mut() = previous);
        }
    }
    let previous = ACTOR.with(|a| a.borrow_mut().replace(actor));
    let _restore = Restore(previous);
    f()
}

/// [`acting`] for a party without a token.
pub fn acting_as<T>(by: &str, f: impl FnOnce() -> T) -> T {
    acting(
        Actor {
            by: by.to_owned(),
            token: None,
        },
        f,
    )
}

/// The acting party on this thread: what [`acting`] set, else `system`.
pub fn current_actor() -> String {
    ACTOR
        .with(|a| a.borrow().as_ref().map(|a| a.by.clone()))
        .unwrap_or_else(|| "system".to_owned())
}

/// The API token the acting party used, if any.
pub fn current_token() -> Option<i64> {
    ACTOR.with(|a| a.borrow().as_ref().and_then(|a| a.token))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_actor_is_scoped_and_nests() {
        assert_eq!(current_actor(), "system");
        acting_as("user:1", || {
            assert_eq!(current_actor(), "user:1");
            assert_eq!(current_token(), None);
            let with_token = Actor {
                by: "user:2".into(),
                token: Some(7),
            };
            acting(with_token, || {
                assert_eq!(current_actor(), "user:2");
                assert_eq!(current_token(), Some(7));
            });
            assert_eq!(current_actor(), "user:1");
        });
        assert_eq!(current_actor(), "system");
    }
}
