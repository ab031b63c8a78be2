//! Mirrors (Istio `mirror`/`mirrors`, Envoy's request shadowing): a fire-and-forget copy
//! of the request to another cluster, with the `-shadow` host, whose response is read and
//! dropped. A mirror follows what the real attempt reads of the body and never slows it.

use super::forward::{self, Transport, UpstreamHead};
use super::upstream_head::upstream_h2;
use crate::body::BodyTap;
use crate::body::RequestBody;
use crate::policy::mirror;
use crate::runtime::active::Active;
use crate::upstream::lb;
use crate::upstream::limits::RequestSlot;
use http::Version;
use meshproxy_config::compile::ClusterId;
use std::sync::Arc;

/// Fire-and-forget copy of the request to a mirror cluster, with the `-shadow` host.
pub(super) fn spawn(
    active: Arc<Active>,
    cid: ClusterId,
    head: &UpstreamHead,
    tap: Option<&BodyTap>,
    version: Version,
) {
    let body = match tap {
        None => RequestBody::Empty,
        Some(t) => match t.mirror() {
            Some(b) => b,
            None => return,
        },
    };
    let authority = head
        .authority
        .to_str()
        .ok()
        .and_then(mirror::shadow_authority)
        .unwrap_or_else(|| head.authority.clone());
    let shadow = UpstreamHead {
        method: head.method.clone(),
        path_and_query: head.path_and_query.clone(),
        authority,
        headers: head.headers.clone(),
    };
    tokio::spawn(async move {
        let cluster = active.snapshot.cluster(cid);
        let state = active.cluster(cid);
        state.resolved(cluster.pool.connect_timeout).await;
        let Some((_, endpoint)) = lb::pick(state, &cluster.load_balancer, None, &[]) else {
            return;
        };
        let transport = Transport::pooled(upstream_h2(cluster, version));
        if !state.limits.start_request() {
            return;
        }
        let _slot = RequestSlot(state.clone());
        if let Ok(att) = forward::send(
            cluster,
            state,
            &endpoint,
            &shadow,
            body,
            forward::Try {
                transport,
                per_try: None,
                attempt: 1,
            },
        )
        .await
        {
            // Read the response to its end so the connection can be reused; discard it.
            let mut body = att.response.into_body();
            let mut complete = true;
            while let Some(frame) = http_body_util::BodyExt::frame(&mut body).await {
                if frame.is_err() {
                    complete = false;
                    break;
                }
            }
            if let (true, forward::Lease::H1(lease)) = (complete, att.lease) {
                state.park(&att.endpoint, lease);
            }
        }
    });
}
