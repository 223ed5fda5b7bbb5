//! The operator's client of the Kubernetes API. Thousands of autoscalers
//! ticking at once (a start, a shard taken over) would otherwise send as many
//! requests at once: the API server is shared by the whole cluster, and every
//! request in flight holds a pooled connection, with its buffers, on both
//! sides for a minute and more after the burst. A bound on requests in
//! flight queues the rest instead; Lease renewals go through a client of
//! their own, so they never queue behind a burst of ticks.

use tower::limit::GlobalConcurrencyLimitLayer;

/// Requests in flight at most by default; a watch counts until its response starts.
pub const DEFAULT_IN_FLIGHT: u32 = 256;

/// A client of `config`'s API server that has at most `in_flight` requests
/// waiting for a response at once; the others wait their turn.
pub fn bounded(config: kube::Config, in_flight: u32) -> Result<kube::Client, kube::Error> {
    Ok(kube::client::ClientBuilder::try_from(config)?
        .with_layer(&GlobalConcurrencyLimitLayer::new(in_flight.max(1) as usize))
        .build())
}

/// The clients the operator reaches the API server through.
#[derive(Clone)]
pub struct ApiClients {
    /// Watches, ticks, status and scale writes.
    pub work: kube::Client,
    /// Lease renewals, which must not wait behind a burst of ticks.
    pub leases: kube::Client,
}

impl From<kube::Client> for ApiClients {
    fn from(client: kube::Client) -> Self {
        ApiClients {
            work: client.clone(),
            leases: client,
        }
    }
}

/// A [`bounded`] client for the work, and one of its own for the Leases.
pub fn clients(config: kube::Config, in_flight: u32) -> Result<ApiClients, kube::Error> {
    Ok(ApiClients {
        leases: kube::Client::try_from(config.clone())?,
        work: bounded(config, in_flight)?,
    })
}
