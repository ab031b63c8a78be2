//! A matched route's action: a direct response, a redirect, or forwarding — after CORS
//! and fault injection, in Envoy's filter order — to a weighted destination's cluster
//! ([`super::relay`]).

use super::exchange::Exchange;
use super::relay::{self, Chosen};
use crate::body::ResponseBody;
use crate::flags::Flags;
use crate::policy::{cors, fault, headers as hdr, redirect};
use http::header::{self, HeaderMap, HeaderValue};
use http::request::Parts;
use http::Response;
use meshproxy_config::compile::matcher::RouteMatch;
use meshproxy_config::compile::route::{
    Abort, DirectResponse, Route, RouteAction, WeightedClusters,
};
use meshproxy_config::host::split_authority;

/// A request's route and what it was matched on.
pub(super) struct Routed<'a> {
    /// The route that matched.
    pub route: &'a Route,
    /// What the match captured (prefix, regex), for rewrites and redirects.
    pub matched: Option<&'a RouteMatch>,
    /// The request's authority as received.
    pub authority: &'a str,
    /// Its host part, normalized.
    pub host: &'a str,
    /// The port the request was for.
    pub port: u16,
    /// It came to a gateway (Envoy's `use_remote_address`).
    pub gateway: bool,
}

/// Carries out the route's action.
pub(super) async fn dispatch(
    x: &mut Exchange,
    parts: Parts,
    r: &Routed<'_>,
) -> Response<ResponseBody> {
    if let Some(rec) = x.record.as_mut() {
        rec.route_name = r.route.name.clone();
    }
    match &r.route.action {
        RouteAction::DirectResponse(d) => direct_response(x, r.route, d),
        RouteAction::Redirect(rd) => {
            let (_, authority_port) = split_authority(r.authority);
            let loc = redirect::location(
                rd,
                &redirect::RequestParts {
                    scheme: x.conn.scheme,
                    host: r.host,
                    authority_port,
                    listener_port: x.conn.local.port(),
                    path: parts.uri.path(),
                    query: parts.uri.query().unwrap_or(""),
                },
                r.matched,
            );
            let mut resp = x.redirect_reply(rd.code, &loc);
            hdr::apply(&r.route.policy.response_headers, resp.headers_mut());
            resp
        }
        RouteAction::Forward(wc) => forward(x, parts, r, wc).await,
    }
}

fn direct_response(x: &mut Exchange, route: &Route, d: &DirectResponse) -> Response<ResponseBody> {
    let mut resp = Response::new(ResponseBody::full(d.body.clone()));
    *resp.status_mut() = http::StatusCode::from_u16(d.status).unwrap_or(http::StatusCode::OK);
    if !d.body.is_empty() {
        resp.headers_mut()
            .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
    }
    hdr::apply(&route.policy.response_headers, resp.headers_mut());
    if let Some(r) = x.record.as_mut() {
        r.details = "direct_response";
    }
    if let Some(cid) = d.cluster {
        // Istio's block_all: reported against BlackHoleCluster.
        let active = x.active.clone();
        if let Some(l) = x.labels.as_mut() {
            l.service = active.cluster(cid).service_labels.clone();
        }
        x.note_upstream(
            active.snapshot.cluster(cid).name.clone(),
            "",
            route.name.clone(),
        );
    }
    x.finish_local(resp, d.status, Flags::NONE)
}

/// What CORS decided before forwarding.
enum CorsStep {
    /// Forward, adding these headers to the response.
    Forward(HeaderMap),
    /// Answered here (a preflight).
    Answered(Response<ResponseBody>),
}

/// CORS runs before the fault filter and the router, as in Envoy's chain.
fn cors_step(x: &mut Exchange, route: &Route, parts: &Parts) -> CorsStep {
    let Some(c) = &route.policy.cors else {
        return CorsStep::Forward(HeaderMap::new());
    };
    match cors::evaluate(c, &parts.method, &parts.headers) {
        cors::Verdict::None => CorsStep::Forward(HeaderMap::new()),
        cors::Verdict::Preflight(h) => {
            let mut resp = Response::new(ResponseBody::empty());
            resp.headers_mut().extend(h);
            CorsStep::Answered(x.finish_local(resp, 200, Flags::NONE))
        }
        cors::Verdict::IgnoredPreflight => {
            let done = x.done(200, Flags::NONE);
            CorsStep::Answered(Response::new(ResponseBody::empty().on_complete(done)))
        }
        cors::Verdict::Forward(h) => CorsStep::Forward(h),
    }
}

/// Fault injection: a delay (flag `DI`) and maybe an abort answered here (flag `FI`).
async fn fault_step(x: &mut Exchange, route: &Route) -> Result<Flags, Response<ResponseBody>> {
    let mut flags = Flags::NONE;
    let Some(f) = &route.policy.fault else {
        return Ok(flags);
    };
    let d = fault::decide(f);
    if let Some(delay) = d.delay {
        tokio::time::sleep(delay).await;
        flags.insert(Flags::DELAY_INJECTED);
    }
    let Some(abort) = d.abort else {
        return Ok(flags);
    };
    let flags = flags | Flags::FAULT_INJECTED;
    let (details, body) = ("fault_filter_abort", "fault filter abort");
    Err(match abort {
        Abort::Http(status) => x.reply(status, flags, details, body),
        Abort::Grpc(code) => x.reply_grpc(200, flags, details, body, Some(code)),
    })
}

async fn forward(
    x: &mut Exchange,
    parts: Parts,
    r: &Routed<'_>,
    wc: &WeightedClusters,
) -> Response<ResponseBody> {
    // The weighted destination is chosen with the route, before the filters run (as
    // Envoy caches the route and cluster), so faults are reported against it.
    let picked = (wc.total_weight > 0 && !wc.destinations.is_empty())
        .then(|| wc.pick(fastrand::u32(..wc.total_weight)))
        .and_then(|d| d.target.resolve(r.port).map(|cid| (d, cid)));
    if let (Some((_, cid)), Some(l)) = (&picked, x.labels.as_mut()) {
        l.service = x.active.cluster(*cid).service_labels.clone();
    }
    let cors_headers = match cors_step(x, r.route, &parts) {
        CorsStep::Forward(h) => h,
        CorsStep::Answered(resp) => return resp,
    };
    let flags = match fault_step(x, r.route).await {
        Ok(flags) => flags,
        Err(resp) => return resp,
    };
    let Some((dest, cid)) = picked else {
        x.note_upstream("", "", r.route.name.clone());
        return x.reply(
            503,
            flags | Flags::NO_CLUSTER_FOUND,
            "cluster_not_found",
            "",
        );
    };
    let chosen = Chosen {
        dest,
        cid,
        cors_headers,
        flags,
    };
    relay::to_cluster(x, parts, r, chosen).await
}
