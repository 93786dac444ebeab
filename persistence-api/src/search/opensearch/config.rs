//! Where the OpenSearch backend sends its requests:
//! `CHAT_SEARCH=opensearch://host:port[,host:port…]/index-prefix`. The
//! hosts are the cluster's HTTP endpoints, tried in turn when one refuses
//! connections; the prefix names this deployment's indices, so several
//! deployments (or tests) can share a cluster.

use std::fmt;

/// Longest wait for one OpenSearch request, in milliseconds, when the
/// configuration names none: a bulk of [`super::documents::BULK_DOCUMENTS_MAX`]
/// messages takes well under a second on a healthy node.
pub const REQUEST_TIMEOUT_MS_DEFAULT: u64 = 10_000;
/// Longest wait for a TCP connection to one host, in milliseconds, before
/// the next host is tried.
pub const CONNECT_TIMEOUT_MS_DEFAULT: u64 = 1_000;
/// Most hosts in one URL.
pub const HOSTS_MAX: usize = 16;
/// Longest index prefix, in bytes (OpenSearch allows 255 for a whole index
/// name; the suffixes we add need the rest).
pub const INDEX_PREFIX_BYTES_MAX: usize = 200;

const SCHEME: &str = "opensearch://";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenSearchConfig {
    /// `host:port` of each HTTP endpoint, in the order they are tried.
    pub hosts: Vec<String>,
    pub index_prefix: String,
    pub request_timeout_ms: u64,
    pub connect_timeout_ms: u64,
}

impl fmt::Display for OpenSearchConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{SCHEME}{}/{}", self.hosts.join(","), self.index_prefix)
    }
}

impl OpenSearchConfig {
    /// Whether `raw` names this backend (and so must parse as its URL).
    pub fn is_url(raw: &str) -> bool {
        raw.starts_with(SCHEME)
    }

    /// Parses `opensearch://host:port[,host:port]/index-prefix`, with the
    /// default timeouts.
    pub fn parse(raw: &str) -> Result<Self, String> {
        let usage = "expected opensearch://host:port[,host:port…]/index-prefix";
        let rest = raw
            .strip_prefix(SCHEME)
            .ok_or_else(|| format!("search {raw:?} does not start with {SCHEME}: {usage}"))?;
        let (hosts, prefix) = rest
            .split_once('/')
            .ok_or_else(|| format!("search {raw:?} names no index prefix: {usage}"))?;
        let hosts: Vec<String> = hosts.split(',').map(str::to_owned).collect();
        if hosts.len() > HOSTS_MAX {
            return Err(format!(
                "search {raw:?} names {} hosts, more than {HOSTS_MAX}",
                hosts.len()
            ));
        }
        for host in &hosts {
            check_host(host).map_err(|why| format!("search {raw:?}: {why}: {usage}"))?;
        }
        check_prefix(prefix).map_err(|why| format!("search {raw:?}: {why}"))?;
        Ok(Self {
            hosts,
            index_prefix: prefix.to_owned(),
            request_timeout_ms: REQUEST_TIMEOUT_MS_DEFAULT,
            connect_timeout_ms: CONNECT_TIMEOUT_MS_DEFAULT,
        })
    }
}

/// `name:port` or `[v6]:port`, port 1..=65535.
fn check_host(host: &str) -> Result<(), String> {
    let (name, port) = host
        .rsplit_once(':')
        .ok_or_else(|| format!("host {host:?} has no :port"))?;
    let bracketed = name.starts_with('[') && name.ends_with(']') && name.len() > 2;
    let plain = !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-');
    if !(bracketed || plain) {
        return Err(format!("host {host:?} is not a host name or address"));
    }
    match port.parse::<u16>() {
        Ok(port) if port > 0 => Ok(()),
        _ => Err(format!("host {host:?} has no port between 1 and 65535")),
    }
}

/// What OpenSearch accepts at the start of an index name, kept to the
/// plain subset: lowercase letters, digits, `-` and `_`, starting with a
/// letter or digit.
fn check_prefix(prefix: &str) -> Result<(), String> {
    if prefix.is_empty() {
        return Err("the index prefix is empty".into());
    }
    if prefix.len() > INDEX_PREFIX_BYTES_MAX {
        return Err(format!(
            "the index prefix is {} bytes, more than {INDEX_PREFIX_BYTES_MAX}",
            prefix.len()
        ));
    }
    let first_ok = prefix
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
    let all_ok = prefix
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_');
    if !(first_ok && all_ok) {
        return Err(format!(
            "the index prefix {prefix:?} must be lowercase letters, digits, `-` and `_`, \
             starting with a letter or digit"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_hosts_and_prefix() {
        let config =
            OpenSearchConfig::parse("opensearch://a:9200,10.0.0.2:9201/chat-prod").unwrap();
        assert_eq!(config.hosts, ["a:9200", "10.0.0.2:9201"]);
        assert_eq!(config.index_prefix, "chat-prod");
        assert_eq!(
            config.to_string(),
            "opensearch://a:9200,10.0.0.2:9201/chat-prod"
        );
        let v6 = OpenSearchConfig::parse("opensearch://[::1]:9200/c").unwrap();
        assert_eq!(v6.hosts, ["[::1]:9200"]);
    }

    #[test]
    fn refuses_malformed_urls_with_a_reason() {
        for (raw, why) in [
            ("opensearch://a:9200", "no index prefix"),
            ("opensearch://a/chat", "no :port"),
            ("opensearch://a:0/chat", "port between"),
            ("opensearch://a:99999/chat", "port between"),
            ("opensearch://:9200/chat", "not a host"),
            ("opensearch://a:9200,/chat", "no :port"),
            ("opensearch://a:9200/", "prefix is empty"),
            ("opensearch://a:9200/Chat", "lowercase"),
            ("opensearch://a:9200/-chat", "lowercase"),
            ("opensearch://a:9200/chat/x", "lowercase"),
            ("http://a:9200/chat", "does not start"),
        ] {
            let error = OpenSearchConfig::parse(raw).unwrap_err();
            assert!(error.contains(why), "{raw}: {error}");
        }
    }
}
