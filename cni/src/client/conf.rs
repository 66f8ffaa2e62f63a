//! What a plugin gets on stdin, and what its result becomes.
//!
//! Each plugin of a list receives its own configuration object with the
//! list's `name` and `cniVersion` injected, the previous result as
//! `prevResult`, and `runtimeConfig` holding the capability arguments it
//! declares (its `capabilities` map) that the runtime supplies — exactly
//! libcni's `buildOneConfig` / `injectRuntimeConfig`.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use rscni_types::types::{CNIResult, CNIResultWithVersion};
use rscni_types::version::SpecVersion;
use serde_json::{Map, Value};

use crate::netconf::{NetworkConfigList, PluginConf};

/// The configuration object for one plugin.
pub(crate) fn plugin_config(
    list: &NetworkConfigList,
    plugin: &PluginConf,
    prev_result: Option<&Value>,
    capability_args: &Map<String, Value>,
    extra: &[(&str, Value)],
) -> Vec<u8> {
    let mut conf = plugin.conf.clone();
    conf.insert("name".into(), Value::String(list.name.clone()));
    conf.insert("cniVersion".into(), Value::String(list.cni_version.clone()));
    if let Some(prev) = prev_result {
        conf.insert("prevResult".into(), prev.clone());
    }
    let runtime = runtime_config(plugin, capability_args);
    if !runtime.is_empty() {
        conf.insert("runtimeConfig".into(), Value::Object(runtime));
    }
    for (k, v) in extra {
        conf.insert((*k).to_owned(), v.clone());
    }
    // A map of JSON values always serializes.
    serde_json::to_vec(&Value::Object(conf)).unwrap_or_default()
}

/// The capability arguments the plugin declares (with `true`) and the
/// runtime supplies.
pub(crate) fn runtime_config(
    plugin: &PluginConf,
    capability_args: &Map<String, Value>,
) -> Map<String, Value> {
    let Some(Value::Object(caps)) = plugin.conf.get("capabilities") else {
        return Map::new();
    };
    caps.iter()
        .filter(|(_, enabled)| enabled.as_bool() == Some(true))
        .filter_map(|(name, _)| capability_args.get(name).map(|v| (name.clone(), v.clone())))
        .collect()
}

/// The network config list as JSON, as it is cached and used again on DEL.
pub(crate) fn list_json(list: &NetworkConfigList) -> Value {
    let mut obj = Map::new();
    obj.insert("cniVersion".into(), Value::String(list.cni_version.clone()));
    obj.insert("name".into(), Value::String(list.name.clone()));
    if list.disable_check {
        obj.insert("disableCheck".into(), Value::Bool(true));
    }
    if list.disable_gc {
        obj.insert("disableGC".into(), Value::Bool(true));
    }
    obj.insert(
        "plugins".into(),
        Value::Array(
            list.plugins
                .iter()
                .map(|p| Value::Object(p.conf.clone()))
                .collect(),
        ),
    );
    Value::Object(obj)
}

/// `CNI_ARGS` from key/value pairs: `K1=V1;K2=V2`.
pub(crate) fn cni_args_string(args: &[(String, String)]) -> String {
    args.iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(";")
}

pub(crate) fn version(s: &str) -> Option<SpecVersion> {
    s.parse().ok()
}

/// Whether `v` is at least `floor` (an unparsable version is not).
pub(crate) fn at_least(v: &str, floor: SpecVersion) -> bool {
    version(v).is_some_and(|v| v >= floor)
}

/// A plugin's ADD output, checked and brought to the list's version:
/// returns the result in the wire layout of `want` and its parsed form.
///
/// Results of 0.3.0 - 0.4.0 (the layout with `ips[].version`) and 1.x are
/// understood in either direction; a result already in `want` is kept
/// byte-for-byte (as JSON), so fields this client does not model survive.
pub(crate) fn normalize_result(stdout: &[u8], want: &str) -> Result<(Value, CNIResult), String> {
    if stdout.iter().all(u8::is_ascii_whitespace) {
        return Err("empty output".into());
    }
    let value: Value = serde_json::from_slice(stdout).map_err(|e| format!("not JSON: {e}"))?;
    let Value::Object(obj) = &value else {
        return Err("not a JSON object".into());
    };
    let got = match obj.get("cniVersion") {
        Some(Value::String(s)) => s.clone(),
        Some(_) => return Err("\"cniVersion\" is not a string".into()),
        None => return Err("missing \"cniVersion\"".into()),
    };
    let got_v = version(&got).ok_or_else(|| format!("bad cniVersion {got:?}"))?;
    if !got_v.is_supported() {
        return Err(format!(
            "result version {got} (before 0.3.0) is not supported"
        ));
    }
    let want_v = version(want).ok_or_else(|| format!("bad list cniVersion {want:?}"))?;
    let parsed: CNIResult =
        serde_json::from_value(value.clone()).map_err(|e| format!("not a CNI result: {e}"))?;
    if got_v == want_v {
        return Ok((value, parsed));
    }
    let converted = if want_v.is_legacy() {
        serde_json::to_value(rscni_types::legacy::CNIResult::new(want_v, parsed.clone()))
    } else {
        serde_json::to_value(CNIResultWithVersion::new(want_v, parsed.clone()))
    }
    .map_err(|e| format!("cannot convert from {got} to {want}: {e}"))?;
    Ok((converted, parsed))
}

/// The pod's addresses in a result: those on the attachment's interface
/// inside the sandbox; failing that, those on any sandbox interface or not
/// tied to an interface.
pub(crate) fn pod_ips(result: &CNIResult, ifname: &str) -> Vec<IpAddr> {
    let iface = |idx: Option<u32>| idx.and_then(|i| result.interfaces.get(i as usize));
    let in_sandbox =
        |i: &rscni_types::types::Interface| i.sandbox.as_deref().is_some_and(|s| !s.is_empty());
    let matched: Vec<IpAddr> = result
        .ips
        .iter()
        .filter(|ip| iface(ip.interface).is_some_and(|i| i.name == ifname && in_sandbox(i)))
        .map(|ip| ip.address.addr())
        .collect();
    if !matched.is_empty() {
        return matched;
    }
    result
        .ips
        .iter()
        .filter(|ip| iface(ip.interface).is_none_or(in_sandbox))
        .map(|ip| ip.address.addr())
        .collect()
}

/// The first IPv4 and first IPv6 address of `ips`.
pub(crate) fn first_of_each(ips: &[IpAddr]) -> (Option<Ipv4Addr>, Option<Ipv6Addr>) {
    let v4 = ips.iter().find_map(|ip| match ip.to_canonical() {
        IpAddr::V4(a) => Some(a),
        IpAddr::V6(_) => None,
    });
    let v6 = ips.iter().find_map(|ip| match ip.to_canonical() {
        IpAddr::V6(a) => Some(a),
        IpAddr::V4(_) => None,
    });
    (v4, v6)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn list() -> NetworkConfigList {
        NetworkConfigList::parse(
            br#"{"cniVersion":"1.0.0","name":"net","plugins":[
                {"type":"a","capabilities":{"portMappings":true,"dns":false,"bandwidth":true}},
                {"type":"b","runtimeConfig":{"stale":1}}]}"#,
            false,
            "x".into(),
        )
        .unwrap()
    }

    #[test]
    fn injects_name_version_prev_result_and_declared_capabilities_only() {
        let l = list();
        let mut caps = Map::new();
        caps.insert("portMappings".into(), json!([{"hostPort": 80}]));
        caps.insert("dns".into(), json!({"servers": ["1.1.1.1"]}));
        let prev = json!({"cniVersion": "1.0.0"});
        let conf: Value =
            serde_json::from_slice(&plugin_config(&l, &l.plugins[0], Some(&prev), &caps, &[]))
                .unwrap();
        assert_eq!(conf["name"], "net");
        assert_eq!(conf["cniVersion"], "1.0.0");
        assert_eq!(conf["prevResult"], prev);
        // dns is declared false, bandwidth is declared but not supplied.
        assert_eq!(
            conf["runtimeConfig"],
            json!({"portMappings": [{"hostPort": 80}]})
        );
        let conf: Value =
            serde_json::from_slice(&plugin_config(&l, &l.plugins[1], None, &caps, &[])).unwrap();
        assert!(conf.get("prevResult").is_none());
        // No capabilities: the plugin's own object is left alone.
        assert_eq!(conf["runtimeConfig"], json!({"stale": 1}));
    }

    #[test]
    fn list_json_round_trips() {
        let l = list();
        let bytes = serde_json::to_vec(&list_json(&l)).unwrap();
        let back = NetworkConfigList::parse(&bytes, false, "x".into()).unwrap();
        assert_eq!(back, l);
    }

    #[test]
    fn cni_args_format() {
        let args = vec![
            ("IgnoreUnknown".to_owned(), "1".to_owned()),
            ("K8S_POD_NAME".to_owned(), "p".to_owned()),
        ];
        assert_eq!(cni_args_string(&args), "IgnoreUnknown=1;K8S_POD_NAME=p");
    }

    #[test]
    fn results_convert_between_layouts() {
        let old = br#"{"cniVersion":"0.4.0","interfaces":[{"name":"eth0","sandbox":"/n"}],
            "ips":[{"version":"4","interface":0,"address":"10.1.0.5/24","gateway":"10.1.0.1"}],
            "dns":{}}"#;
        let (v, r) = normalize_result(old, "1.0.0").unwrap();
        assert_eq!(v["cniVersion"], "1.0.0");
        assert!(v["ips"][0].get("version").is_none());
        assert_eq!(v["ips"][0]["address"], "10.1.0.5/24");
        assert_eq!(
            pod_ips(&r, "eth0"),
            vec!["10.1.0.5".parse::<IpAddr>().unwrap()]
        );
        let (v, _) = normalize_result(&serde_json::to_vec(&v).unwrap(), "0.3.1").unwrap();
        assert_eq!(v["cniVersion"], "0.3.1");
        assert_eq!(v["ips"][0]["version"], "4");
        // Same version: kept as is, unknown keys included.
        let same = br#"{"cniVersion":"1.0.0","ips":[],"x-extra":1}"#;
        assert_eq!(normalize_result(same, "1.0.0").unwrap().0["x-extra"], 1);
    }

    #[test]
    fn bad_results_are_explained() {
        for (doc, want) in [
            ("", "empty"),
            ("nope", "not JSON"),
            ("[]", "not a JSON object"),
            (r#"{"ips":[]}"#, "missing \"cniVersion\""),
            (r#"{"cniVersion":"0.2.0","ip4":{}}"#, "not supported"),
            (
                r#"{"cniVersion":"1.0.0","ips":[{"address":"x"}]}"#,
                "not a CNI result",
            ),
        ] {
            let e = normalize_result(doc.as_bytes(), "1.0.0").unwrap_err();
            assert!(e.contains(want), "{doc}: {e}");
        }
    }

    #[test]
    fn pod_ips_prefer_the_sandbox_interface() {
        let r: CNIResult = serde_json::from_value(json!({
            "interfaces": [
                {"name": "cni0"},
                {"name": "veth1"},
                {"name": "eth0", "sandbox": "/run/netns/x"}
            ],
            "ips": [
                {"interface": 0, "address": "10.0.0.1/24"},
                {"interface": 2, "address": "fd00::5/64"},
                {"interface": 2, "address": "10.0.0.5/24"}
            ]
        }))
        .unwrap();
        let ips = pod_ips(&r, "eth0");
        assert_eq!(ips.len(), 2);
        let (v4, v6) = first_of_each(&ips);
        assert_eq!(v4, Some("10.0.0.5".parse().unwrap()));
        assert_eq!(v6, Some("fd00::5".parse().unwrap()));
    }
}
