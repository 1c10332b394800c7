//! The aggregator's front-proxy settings, from the ConfigMap
//! `kube-system/extension-apiserver-authentication` that kube-apiserver publishes (reading it needs
//! the `extension-apiserver-authentication-reader` Role in kube-system).

use std::collections::BTreeMap;

pub const CONFIGMAP_NAMESPACE: &str = "kube-system";
pub const CONFIGMAP_NAME: &str = "extension-apiserver-authentication";

#[derive(Clone, Debug, Default, PartialEq)]
pub struct FrontProxyConfig {
    pub ca_pem: String,
    pub allowed_names: Vec<String>,
    pub username_headers: Vec<String>,
    pub group_headers: Vec<String>,
    pub extra_headers_prefixes: Vec<String>,
}

fn json_list(data: &BTreeMap<String, String>, key: &str) -> Vec<String> {
    data.get(key)
        .and_then(|v| serde_json::from_str::<Vec<String>>(v).ok())
        .unwrap_or_default()
}

impl FrontProxyConfig {
    /// None when the API server has no front-proxy (requestheader) configuration.
    pub fn from_configmap(data: &BTreeMap<String, String>) -> Option<FrontProxyConfig> {
        let ca_pem = data.get("requestheader-client-ca-file")?.clone();
        Some(FrontProxyConfig {
            ca_pem,
            allowed_names: json_list(data, "requestheader-allowed-names"),
            username_headers: json_list(data, "requestheader-username-headers"),
            group_headers: json_list(data, "requestheader-group-headers"),
            extra_headers_prefixes: json_list(data, "requestheader-extra-headers-prefix"),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_configmap() {
        let data: BTreeMap<String, String> = [
            ("requestheader-client-ca-file", "PEM"),
            ("requestheader-allowed-names", r#"["front-proxy-client"]"#),
            ("requestheader-username-headers", r#"["X-Remote-User"]"#),
            ("requestheader-group-headers", r#"["X-Remote-Group"]"#),
            (
                "requestheader-extra-headers-prefix",
                r#"["X-Remote-Extra-"]"#,
            ),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let fp = FrontProxyConfig::from_configmap(&data).expect("config");
        assert_eq!(fp.allowed_names, ["front-proxy-client"]);
        assert_eq!(fp.username_headers, ["X-Remote-User"]);
        assert_eq!(fp.extra_headers_prefixes, ["X-Remote-Extra-"]);
        assert!(FrontProxyConfig::from_configmap(&BTreeMap::new()).is_none());
    }
}
