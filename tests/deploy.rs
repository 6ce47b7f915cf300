//! deploy/k8s/indexed-job.yaml: parsed as Kubernetes would see it, and the
//! fields osforge fills in checked against osforge itself: its arguments
//! parse with osforge's own command line (S3 URLs, --host-shard), the shard
//! count is the Job's completions, the credentials come from the Secret in
//! the file through secretKeyRef, and the hosts file of the ConfigMap loads
//! against the profile the Job builds.

use std::path::{Path, PathBuf};

use clap::Parser;
use serde_json::Value;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn documents() -> Vec<Value> {
    let text = std::fs::read_to_string(repo().join("deploy/k8s/indexed-job.yaml")).unwrap();
    serde_saphyr::from_multiple(&text).expect("the manifests parse as YAML")
}

fn of_kind<'a>(docs: &'a [Value], kind: &str) -> &'a Value {
    let found: Vec<&Value> = docs.iter().filter(|d| d["kind"] == kind).collect();
    assert_eq!(found.len(), 1, "one {kind} expected");
    found[0]
}

/// The value after `flag` in `args`.
fn after<'a>(args: &'a [String], flag: &str) -> &'a str {
    let i = args
        .iter()
        .position(|a| a == flag)
        .unwrap_or_else(|| panic!("no {flag} in {args:?}"));
    &args[i + 1]
}

#[test]
fn the_indexed_job_fans_hosts_out_with_a_shared_s3_cache_and_secret_credentials() {
    let docs = documents();
    let job = of_kind(&docs, "Job");
    assert_eq!(job["apiVersion"], "batch/v1");
    let spec = &job["spec"];
    assert_eq!(spec["completionMode"], "Indexed");
    let completions = spec["completions"].as_u64().expect("completions");
    let parallelism = spec["parallelism"].as_u64().expect("parallelism");
    assert!(
        completions >= 1 && (1..=completions).contains(&parallelism),
        "{spec}"
    );
    let pod = &spec["template"]["spec"];
    assert_eq!(
        pod["restartPolicy"], "Never",
        "Jobs need Never or OnFailure"
    );
    let containers = pod["containers"].as_array().unwrap();
    assert_eq!(containers.len(), 1);
    let container = &containers[0];
    assert!(
        container["image"]
            .as_str()
            .is_some_and(|i| i.contains("osforge")),
        "{container}"
    );

    // The arguments, with the index Kubernetes substitutes, are a command
    // line osforge accepts.
    let args: Vec<String> = container["args"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().expect("string args").to_string())
        .collect();
    assert!(args.contains(&"build".to_string()), "{args:?}");
    let shard = after(&args, "--host-shard");
    assert_eq!(shard, format!("$(JOB_COMPLETION_INDEX)/{completions}"));
    for index in 0..completions {
        let line: Vec<String> = std::iter::once("osforge".to_string())
            .chain(
                args.iter()
                    .map(|a| a.replace("$(JOB_COMPLETION_INDEX)", &index.to_string())),
            )
            .collect();
        osforge::cli::Cli::try_parse_from(&line)
            .unwrap_or_else(|e| panic!("osforge refuses {line:?}: {e}"));
    }
    for flag in ["--cache-remote", "--publish"] {
        let url: osforge::s3::S3Url = after(&args, flag).parse().unwrap();
        assert!(!url.prefix.is_empty(), "{flag} {url}: give it a prefix");
    }
    assert!(after(&args, "--s3-endpoint").starts_with("http"));

    // Credentials: from the Secret, through the environment, never in args.
    let secret = of_kind(&docs, "Secret");
    let secret_name = secret["metadata"]["name"].as_str().unwrap();
    let env = container["env"].as_array().unwrap();
    for var in ["S3_ACCESS", "S3_SECRET"] {
        let entry = env
            .iter()
            .find(|e| e["name"] == var)
            .unwrap_or_else(|| panic!("no {var} in {env:?}"));
        let reference = &entry["valueFrom"]["secretKeyRef"];
        assert_eq!(reference["name"], secret_name, "{entry}");
        let key = reference["key"].as_str().unwrap();
        assert!(
            secret["stringData"][key].is_string(),
            "the Secret has no {key}"
        );
        let value = secret["stringData"][key].as_str().unwrap();
        assert!(!args.iter().any(|a| a.contains(value)), "{var} in the args");
    }

    // The hosts file is the ConfigMap's, mounted where --hosts points.
    let hosts_path = Path::new(after(&args, "--hosts"));
    let mount = container["volumeMounts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| hosts_path.starts_with(m["mountPath"].as_str().unwrap()))
        .expect("--hosts is on a mounted volume");
    let volume = pod["volumes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["name"] == mount["name"])
        .expect("the mount's volume");
    let config_map = of_kind(&docs, "ConfigMap");
    assert_eq!(volume["configMap"]["name"], config_map["metadata"]["name"]);
    let file_name = hosts_path.file_name().unwrap().to_str().unwrap();
    let hosts_yaml = config_map["data"][file_name]
        .as_str()
        .expect("the hosts file");

    let search = osforge::profile::SearchPath::new(
        vec![repo().join("profiles")],
        vec![repo().join("templates")],
    );
    let profile = osforge::profile::load(after(&args, "--profile"), &search, &[])
        .unwrap_or_else(|e| panic!("the Job's profile: {e}"));
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(file_name);
    std::fs::write(&path, hosts_yaml).unwrap();
    let hosts = osforge::profile::HostsFile::load(&path, &profile, &search)
        .unwrap_or_else(|e| panic!("the ConfigMap's hosts file: {e}"));
    assert!(
        hosts.hosts.len() as u64 >= completions,
        "more workers ({completions}) than hosts ({})",
        hosts.hosts.len()
    );
}
