//! Helpers for native unit tests of the functions' services.

/// Runs a future that never suspends (services over in-memory fakes) to completion.
/// Panics if it does suspend: a fake must answer at once.
pub fn block_on<F: std::future::Future>(future: F) -> F::Output {
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    let mut future = std::pin::pin!(future);
    match future.as_mut().poll(&mut cx) {
        std::task::Poll::Ready(v) => v,
        std::task::Poll::Pending => panic!("a fake future suspended"),
    }
}

/// Event number `seq` of stream `orders`>`inventory`/0, with no payload: for tests of delivery
/// and ordering, where only the stream and seq matter.
pub fn envelope(seq: i64) -> crate::Envelope {
    crate::Envelope {
        id: format!("e{seq}"),
        type_name: "x".into(),
        source: "orders".into(),
        consumer: "inventory".into(),
        partition: 0,
        seq,
        occurred_at: String::new(),
        traceparent: String::new(),
        data: serde_json::Value::Null,
        mac: String::new(),
    }
}

/// `event` as the `seq`-th event of stream `source`/0, whatever its order: for services' tests,
/// which apply events of several orders in one sequence.
pub fn in_stream_0(source: &str, seq: i64, event: &shop_events::ShopEvent) -> crate::Envelope {
    crate::Envelope {
        partition: 0,
        ..crate::Envelope::wrap(source, "", seq, event)
    }
}

/// An in-memory fake store for a service's unit tests: the function's own state `S` beside the
/// inbox every consumer keeps. `rollback_on_error` restores both when the body fails, as a
/// rolled-back SQL transaction does.
#[derive(Default)]
pub struct Fake<S> {
    state: std::cell::RefCell<S>,
    inbox: std::cell::RefCell<crate::inbox::Streams>,
}

impl<S: Clone> Fake<S> {
    pub fn state(&self) -> std::cell::Ref<'_, S> {
        self.state.borrow()
    }

    pub fn state_mut(&self) -> std::cell::RefMut<'_, S> {
        self.state.borrow_mut()
    }

    pub fn rollback_on_error<T, E>(&self, f: impl FnOnce() -> Result<T, E>) -> Result<T, E> {
        let state = self.state.borrow().clone();
        let inbox = self.inbox.borrow().clone();
        let result = f();
        if result.is_err() {
            *self.state.borrow_mut() = state;
            *self.inbox.borrow_mut() = inbox;
        }
        result
    }
}

impl<S> Fake<S> {
    /// The last seq applied in stream `source`/`partition`.
    pub fn last_seq(&self, source: &str, partition: i64) -> i64 {
        self.inbox.borrow().last(source, partition)
    }
}

impl<S> crate::consume::ConsumerStore for Fake<S> {
    fn last_seq(&self, source: &str, partition: i64) -> anyhow::Result<i64> {
        Ok(Fake::last_seq(self, source, partition))
    }
}

impl<S> crate::inbox::InboxPort for Fake<S> {
    fn inbox_position(&self, env: &crate::Envelope) -> anyhow::Result<crate::inbox::Position> {
        Ok(crate::inbox::position(
            self.last_seq(&env.source, env.partition),
            env.seq,
        ))
    }

    fn inbox_record(&self, env: &crate::Envelope) -> anyhow::Result<()> {
        self.inbox.borrow_mut().advance(env);
        Ok(())
    }
}
