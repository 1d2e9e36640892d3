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
