//! A blocking HTTP client whose responses keep every status (4xx/5xx are results, not errors).

use std::time::Duration;

use ureq::http;

/// A fully read HTTP response.
#[derive(Debug, Clone)]
pub struct HttpResponse {
    /// Status code.
    pub status: u16,
    /// Headers, names in lower case, in arrival order.
    pub headers: Vec<(String, String)>,
    /// Body as text (lossy UTF-8).
    pub body: String,
}

impl HttpResponse {
    /// The first value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(key, _)| *key == name)
            .map(|(_, value)| value.as_str())
    }

    /// The body parsed as JSON; panics with the body when it is not JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_else(|error| {
            panic!(
                "response ({}) is not JSON ({error}): {}",
                self.status, self.body
            )
        })
    }
}

/// Blocking HTTP client with a 30 s timeout per request.
#[derive(Clone)]
pub struct HttpClient {
    agent: ureq::Agent,
}

impl Default for HttpClient {
    fn default() -> Self {
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(30)))
            .build()
            .new_agent();
        HttpClient { agent }
    }
}

impl HttpClient {
    /// Sends a request; `Err` only for transport failures (refused, reset, timeout).
    pub fn send(
        &self,
        method: &str,
        url: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Result<HttpResponse, String> {
        let mut request = http::Request::builder().method(method).uri(url);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let request = request
            .body(body.to_vec())
            .map_err(|error| format!("invalid request {method} {url}: {error}"))?;
        let mut response = self
            .agent
            .run(request)
            .map_err(|error| format!("{method} {url}: {error}"))?;
        let status = response.status().as_u16();
        let headers = response
            .headers()
            .iter()
            .map(|(name, value)| {
                let value = String::from_utf8_lossy(value.as_bytes()).into_owned();
                (name.as_str().to_owned(), value)
            })
            .collect();
        let bytes = response
            .body_mut()
            .read_to_vec()
            .map_err(|error| format!("{method} {url}: reading body: {error}"))?;
        let body = String::from_utf8_lossy(&bytes).into_owned();
        Ok(HttpResponse {
            status,
            headers,
            body,
        })
    }

    /// GET `url`; panics on transport failure.
    pub fn get(&self, url: &str) -> HttpResponse {
        self.send("GET", url, &[], &[])
            .unwrap_or_else(|error| panic!("{error}"))
    }

    /// POST `body` to `url`; panics on transport failure.
    pub fn post(&self, url: &str, body: &[u8]) -> HttpResponse {
        self.send("POST", url, &[], body)
            .unwrap_or_else(|error| panic!("{error}"))
    }
}
