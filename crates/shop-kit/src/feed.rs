//! Reading another function's event feed
//! (`GET {app_base_url}/<source>/events?consumer=C&partition=P&after=N`). This is how a
//! consumer fills a gap in one of its streams or catches up: an absolute URL rather than service chaining, because Spin
//! forbids chaining from Redis-triggered components. The reader presents the feed token of
//! the source (`seal`), and verifies every event's MAC as if it had come on Redis.

use crate::Envelope;

/// A source of past events, per stream.
#[allow(async_fn_in_trait)] // components are single-threaded; no Send bound is wanted
pub trait Feed {
    /// Up to `limit` events of this consumer's stream `source`/`partition` with `seq > after`,
    /// oldest first.
    async fn page(
        &self,
        source: &str,
        partition: i64,
        after: i64,
        limit: i64,
    ) -> anyhow::Result<Vec<Envelope>>;
}

/// The feed served over HTTP by the app itself.
pub struct HttpFeed {
    pub base_url: String,
    /// Whose streams it reads: the consuming function.
    pub consumer: &'static str,
    pub traceparent: String,
}

#[derive(serde::Deserialize)]
struct Page {
    events: Vec<Envelope>,
}

impl Feed for HttpFeed {
    async fn page(
        &self,
        source: &str,
        partition: i64,
        after: i64,
        limit: i64,
    ) -> anyhow::Result<Vec<Envelope>> {
        let url = format!(
            "{}/{source}/events?consumer={}&partition={partition}&after={after}&limit={limit}",
            self.base_url.trim_end_matches('/'),
            self.consumer
        );
        let keys = crate::config::internal_keys();
        let token = keys
            .as_ref()
            .map(|keys| keys.token(crate::seal::Purpose::FeedToken, source))
            .unwrap_or_default();
        let request = spin_sdk::http::Request::get(&url)
            .header("traceparent", &self.traceparent)
            .header("authorization", format!("Bearer {token}"))
            .build();
        let response: spin_sdk::http::Response = spin_sdk::http::send(request)
            .await
            .map_err(|e| anyhow::anyhow!("GET {url}: {e}"))?;
        anyhow::ensure!(
            *response.status() == 200,
            "GET {url}: status {}",
            response.status()
        );
        let page: Page = serde_json::from_slice(response.body())?;
        for env in &page.events {
            crate::seal::authentic(keys.as_ref(), env, self.consumer)
                .map_err(|reason| anyhow::anyhow!("GET {url}: {}: {reason}", env.label()))?;
        }
        Ok(page.events)
    }
}
