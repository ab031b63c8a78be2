//! Envoy response flags (`%RESPONSE_FLAGS%`), the short codes Istio surfaces in access logs
//! and the `response_flags` metric label.

use std::fmt;

/// A set of response flags.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Flags(u32);

macro_rules! flags {
    ($($name:ident = $bit:expr, $code:literal, $doc:literal;)*) => {
        impl Flags {
            $(#[doc = $doc] pub const $name: Flags = Flags(1 << $bit);)*
            const TABLE: &'static [(Flags, &'static str)] = &[$((Flags::$name, $code),)*];
        }
    };
}

flags! {
    NO_HEALTHY_UPSTREAM = 0, "UH", "No healthy upstream host (503).";
    UPSTREAM_CONNECTION_FAILURE = 1, "UF", "Upstream connection failure (503).";
    UPSTREAM_OVERFLOW = 2, "UO", "Circuit breaker overflow (503).";
    NO_ROUTE_FOUND = 3, "NR", "No route (404).";
    UPSTREAM_RETRY_LIMIT_EXCEEDED = 4, "URX", "Retry limit reached.";
    NO_CLUSTER_FOUND = 5, "NC", "Upstream cluster not found (503).";
    DURATION_TIMEOUT = 6, "DT", "Maximum connection/stream duration reached.";
    DOWNSTREAM_CONNECTION_TERMINATION = 7, "DC", "The client went away.";
    UPSTREAM_REQUEST_TIMEOUT = 8, "UT", "Upstream request timeout (504).";
    LOCAL_RESET = 9, "LR", "Local reset.";
    UPSTREAM_REMOTE_RESET = 10, "UR", "Upstream reset the stream.";
    UPSTREAM_CONNECTION_TERMINATION = 11, "UC", "Upstream connection terminated (503).";
    DELAY_INJECTED = 12, "DI", "Fault-injected delay.";
    FAULT_INJECTED = 13, "FI", "Fault-injected abort.";
    DOWNSTREAM_PROTOCOL_ERROR = 14, "DPE", "Downstream protocol error.";
    UPSTREAM_PROTOCOL_ERROR = 15, "UPE", "Upstream protocol error.";
    STREAM_IDLE_TIMEOUT = 16, "SI", "Stream idle timeout.";
    DNS_RESOLUTION_FAILED = 17, "DF", "DNS resolution failed.";
    OVERLOAD_MANAGER = 18, "OM", "The proxy itself is overloaded (503; Envoy's overload manager).";
    RATE_LIMITED = 19, "RL", "Refused by a rate limit (429; Envoy's RateLimited).";
    RATE_LIMIT_SERVICE_ERROR = 20, "RLSE", "The rate-limit backend failed and failureModeDeny refused (500; Envoy's RateLimitServiceError).";
}

impl Flags {
    /// No flag.
    pub const NONE: Flags = Flags(0);

    /// True when no flag is set.
    pub fn is_empty(&self) -> bool {
        self.0 == 0
    }

    /// True when every flag of `other` is set.
    pub fn contains(&self, other: Flags) -> bool {
        self.0 & other.0 == other.0
    }

    /// Adds the flags of `other`.
    pub fn insert(&mut self, other: Flags) {
        self.0 |= other.0;
    }
}

impl std::ops::BitOr for Flags {
    type Output = Flags;
    fn bitor(self, rhs: Flags) -> Flags {
        Flags(self.0 | rhs.0)
    }
}

impl fmt::Display for Flags {
    /// Envoy's format: comma-joined short codes, `-` when empty.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_empty() {
            return f.write_str("-");
        }
        let mut first = true;
        for (flag, code) in Flags::TABLE {
            if self.contains(*flag) {
                if !first {
                    f.write_str(",")?;
                }
                f.write_str(code)?;
                first = false;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::Flags;

    #[test]
    fn envoy_format() {
        assert_eq!(Flags::NONE.to_string(), "-");
        assert_eq!(Flags::NO_ROUTE_FOUND.to_string(), "NR");
        assert_eq!(
            (Flags::UPSTREAM_CONNECTION_FAILURE | Flags::UPSTREAM_RETRY_LIMIT_EXCEEDED).to_string(),
            "UF,URX"
        );
    }
}
