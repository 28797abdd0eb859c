//! `hive stack config` against the stock `docker stack config` (which needs no daemon): for
//! a corpus of Compose files written here, both must print the same normalised document.
//! Also the bad-file messages (file, line, column, key path, what was expected) and the
//! `.env` file, which are hive's own. No root needed.

use crate::support;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const DOCKER: &str = "/usr/local/bin/docker";

/// The environment both commands see: nothing from the test runner but PATH and HOME.
const ENV: &[(&str, &str)] = &[
    (
        "PATH",
        "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    ),
    ("HOME", "/home/stk"),
    ("TAG", "1.25"),
    ("REPLICAS", "3"),
    ("EMPTY", ""),
    ("PORT", "8080"),
    ("RO", "yes"),
];

fn run(program: &str, dir: &Path, args: &[&str]) -> Output {
    Command::new(program)
        .current_dir(dir)
        .env_clear()
        .envs(ENV.iter().copied())
        .env("DOCKER_CONFIG", dir.join(".docker"))
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {program}: {e}"))
}

fn hive(dir: &Path, files: &[&str]) -> Output {
    let mut args = vec!["stack", "config"];
    for f in files {
        args.extend(["-c", f]);
    }
    run(support::HIVE, dir, &args)
}

fn docker_available() -> bool {
    if Path::new(DOCKER).exists() {
        return true;
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "{DOCKER} is missing: the golden test compares with the stock docker CLI"
    );
    eprintln!("skipped: {DOCKER} is missing");
    false
}

fn write_case(files: &[(&str, &str)]) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().expect("tempdir");
    for (name, text) in files {
        let path = dir.path().join(name);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).expect("mkdir");
        }
        std::fs::write(&path, text).expect("write");
    }
    let root = dir.path().to_path_buf();
    (dir, root)
}

/// Runs both commands on the case and requires the same output.
fn golden(name: &str, files: &[(&str, &str)], compose_files: &[&str]) {
    if !docker_available() {
        return;
    }
    let (_guard, dir) = write_case(files);
    let mut args = vec!["stack", "config"];
    for f in compose_files {
        args.extend(["-c", f]);
    }
    let docker = run(DOCKER, &dir, &args);
    assert!(
        docker.status.success(),
        "{name}: docker refused the case: {}",
        String::from_utf8_lossy(&docker.stderr)
    );
    let ours = hive(&dir, compose_files);
    assert!(
        ours.status.success(),
        "{name}: hive refused the case: {}",
        String::from_utf8_lossy(&ours.stderr)
    );
    let (want, got) = (
        String::from_utf8_lossy(&docker.stdout),
        String::from_utf8_lossy(&ours.stdout),
    );
    if want != got {
        let mut report = format!("{name}: hive stack config differs from docker stack config\n");
        for (i, (w, g)) in want.lines().zip(got.lines()).enumerate() {
            if w != g {
                report.push_str(&format!(
                    "first difference at line {}:\n  docker: {w}\n  hive:   {g}\n",
                    i + 1
                ));
                break;
            }
        }
        report.push_str(&format!("--- docker\n{want}\n--- hive\n{got}"));
        panic!("{report}");
    }
}

const EVERY_SERVICE_KEY: &str = r#"version: "3.13"
services:
  web:
    image: "nginx:${TAG}"
    command: nginx -g "daemon off;"
    entrypoint: ["/docker-entrypoint.sh"]
    environment:
      - MODE=prod
      - HOME
      - EMPTY=
      - "QUOTED=a b"
    env_file: web.env
    ports:
      - "${PORT}:80"
      - "9000-9001:9000-9001/udp"
      - 53:53/udp
      - "443"
      - target: 8443
        published: 8443
        protocol: tcp
        mode: host
    networks:
      front:
        aliases: [www, site]
      back:
    hostname: web-host
    user: "1000:1000"
    working_dir: /srv
    stop_grace_period: 90s
    stop_signal: SIGQUIT
    labels:
      com.example.tier: front
      com.example.empty: ""
    extra_hosts:
      - "db.local:10.0.0.5"
      - "v6.local=[::1]"
    healthcheck:
      test: curl -f http://localhost/ || exit 1
      interval: 1m30s
      timeout: 10s
      retries: 3
      start_period: 40s
    secrets:
      - site_key
      - source: site_cert
        target: /etc/ssl/site.pem
        uid: "101"
        gid: "101"
        mode: 0440
    configs:
      - source: nginx_conf
        target: /etc/nginx/nginx.conf
        mode: 0444
      - motd
    volumes:
      - data:/var/lib/data
      - ./static:/srv/static:ro
      - /var/run/x.sock:/var/run/x.sock
      - type: tmpfs
        target: /tmp
        tmpfs:
          size: 1000000
      - type: volume
        source: logs
        target: /var/log
        volume:
          nocopy: true
      - type: bind
        source: ./conf
        target: /conf
        read_only: true
        bind:
          propagation: rprivate
    init: true
    read_only: true
    cap_add: [NET_ADMIN]
    cap_drop:
      - ALL
    ulimits:
      nproc: 65535
      nofile:
        soft: 20000
        hard: 40000
    sysctls:
      net.core.somaxconn: 1024
      net.ipv4.tcp_syncookies: 0
    deploy:
      mode: replicated
      replicas: ${REPLICAS}
      endpoint_mode: vip
      labels:
        com.example.deploy: "yes"
      placement:
        constraints:
          - node.role == worker
          - node.labels.zone != east
        preferences:
          - spread: node.labels.zone
        max_replicas_per_node: 2
      resources:
        limits:
          cpus: "0.50"
          memory: 512M
          pids: 100
        reservations:
          cpus: '0.25'
          memory: 20M
      restart_policy:
        condition: on-failure
        delay: 5s
        max_attempts: 3
        window: 2m
      update_config:
        parallelism: 2
        delay: 10s
        failure_action: rollback
        monitor: 1m
        max_failure_ratio: 0.3
        order: start-first
      rollback_config:
        parallelism: 1
        order: stop-first
  agent:
    image: busybox
    command: ["sh", "-c", "echo $$HOME"]
    environment:
      A: 1
      B: "two"
      C:
      D: 1.5
    networks:
      - back
    deploy:
      mode: global
      endpoint_mode: dnsrr
    stop_grace_period: 1h
networks:
  front:
    driver: overlay
    attachable: true
    driver_opts:
      encrypted: ""
    labels:
      - "com.example.net=front"
    ipam:
      driver: default
      config:
        - subnet: 10.20.0.0/24
  back:
    driver: overlay
    internal: true
  outside:
    external: true
    name: host_net
  legacy:
    external:
      name: legacy_net
volumes:
  data:
    driver: local
    driver_opts:
      type: nfs
      o: "addr=10.0.0.1,rw"
  logs:
  shared:
    external: true
secrets:
  site_key:
    file: ./secrets/site.key
  site_cert:
    external: true
  named:
    name: prod_secret
    file: /etc/hostname
configs:
  nginx_conf:
    file: nginx.conf
    labels:
      role: web
  motd:
    external: true
    name: motd_v2
"#;

#[test]
fn every_key_of_a_stack_file_is_normalised_as_docker_does() {
    golden(
        "every key",
        &[
            ("app.yml", EVERY_SERVICE_KEY),
            (
                "web.env",
                "# a comment\nFROM_FILE=1\nMODE=dev\n\nSPACED=a b\n",
            ),
        ],
        &["app.yml"],
    );
}

#[test]
fn anchors_merge_keys_and_extension_fields() {
    golden(
        "anchors",
        &[(
            "app.yml",
            r#"version: "3.9"
x-defaults: &defaults
  image: busybox
  environment: &env
    LEVEL: info
  deploy:
    restart_policy:
      condition: any
x-labels: &labels
  com.example.team: core
services:
  one:
    <<: *defaults
    command: sleep 1d
    labels: *labels
    x-note: first
  two:
    <<: *defaults
    environment:
      <<: *env
      EXTRA: "1"
    deploy:
      replicas: 2
"#,
        )],
        &["app.yml"],
    );
}

#[test]
fn interpolation_forms() {
    golden(
        "interpolation",
        &[(
            "app.yml",
            r#"services:
  web:
    image: "busybox:${TAG}"
    command: echo ${UNSET:-fallback} ${EMPTY:-soft} ${EMPTY-hard} $TAG $$ESCAPED ${TAG?must} ${TAG:?must}
    read_only: "${RO}"
    ports:
      - target: 80
        published: "${PORT}"
    deploy:
      replicas: "${REPLICAS}"
"#,
        )],
        &["app.yml"],
    );
}

#[test]
fn several_files_merge_as_docker_merges_them() {
    golden(
        "merge",
        &[
            (
                "base.yml",
                r#"version: "3.8"
services:
  web:
    image: nginx:1
    command: ["a", "b"]
    environment:
      A: "1"
      B: "2"
    ports:
      - "8080:80"
      - "9090:90"
    cap_add: [NET_ADMIN]
    labels:
      keep: "yes"
    secrets:
      - one
    deploy:
      replicas: 2
      placement:
        constraints: [node.role == worker]
      resources:
        limits:
          memory: 64M
networks:
  front:
    driver: overlay
secrets:
  one:
    file: ./one.txt
"#,
            ),
            (
                "override.yml",
                r#"version: "3.8"
services:
  web:
    image: nginx:2
    command: c
    environment:
      B: "3"
      C: "4"
    ports:
      - "8080:81"
      - "7070:70"
    cap_add: [SYS_TIME]
    secrets:
      - two
    deploy:
      replicas: 5
      placement:
        constraints: [node.labels.zone == a]
      resources:
        limits:
          cpus: "1"
  db:
    image: postgres
networks:
  back:
    driver: overlay
secrets:
  two:
    file: ./two.txt
"#,
            ),
        ],
        &["base.yml", "override.yml"],
    );
}

#[test]
fn short_syntax_edge_cases() {
    golden(
        "edge cases",
        &[(
            "app.yml",
            r#"services:
  web:
    image: x
    command: 'sh -c "echo a  b" extra'
    ports:
      - "3000-3001:4000-4001"
      - 9090
    expose: [80, "8080"]
    dns: 8.8.8.8
    tmpfs: /run
    volumes:
      - /data
      - ~/cfg:/cfg:rw
    extra_hosts:
      somehost: 1.2.3.4
    deploy:
      resources:
        limits:
          cpus: "0.5"
    stop_grace_period: 1500ms
  other:
    image: y
    environment:
      FLAG: on
      NUM: 0755
      OCT: 0o17
    networks:
      n1:
        aliases: [a]
        ipv4_address: 10.0.0.2
networks:
  n1:
"#,
        )],
        &["app.yml"],
    );
}

#[test]
fn unversioned_compose_specification_file() {
    golden(
        "unversioned",
        &[(
            "compose.yaml",
            "services:\n  web:\n    image: whoami\n    ports: [\"80:80\"]\n",
        )],
        &["compose.yaml"],
    );
}

/// What hive says about a bad file: the file, the line and column, the key path, and what
/// was expected.
fn refused(text: &str) -> String {
    let (_guard, dir) = write_case(&[("bad.yml", text)]);
    let out = hive(&dir, &["bad.yml"]);
    assert!(!out.status.success(), "hive accepted a bad file:\n{text}");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn bad_files_are_refused_with_file_line_column_and_key_path() {
    let cases: &[(&str, &[&str])] = &[
        (
            "services:\n  web:\n    image: x\n    deploy:\n      replicas: many\n",
            &[
                "bad.yml:5:17",
                "services.web.deploy.replicas",
                "expected an integer",
                "\"many\"",
            ],
        ),
        (
            "services:\n  web:\n    image: x\n    deploy:\n      replicaz: 2\n",
            &[
                "bad.yml:5:7",
                "services.web.deploy.replicaz",
                "unknown key \"replicaz\"",
                "replicas",
            ],
        ),
        (
            "services:\n  web:\n    image: x\n    ports:\n      - \"80:99999\"\n",
            &["bad.yml:5:9", "services.web.ports[0]", "99999"],
        ),
        (
            "services:\n  web:\n    image: x\n   bad: [\n",
            &["bad.yml:", "YAML syntax error"],
        ),
        (
            "services:\n  web:\n    image: ${NEEDED:?set NEEDED to the image}\n",
            &[
                "bad.yml:3:12",
                "services.web.image",
                "required variable NEEDED is missing a value: set NEEDED to the image",
            ],
        ),
        (
            "services:\n  web:\n    image: x\n    networks: [front]\n",
            &[
                "bad.yml:4:16",
                "services.web.networks",
                "undefined network \"front\"",
            ],
        ),
        (
            "services:\n  web:\n    image: x\n    secrets: [key]\n",
            &["services.web.secrets", "undefined secret \"key\""],
        ),
        (
            "services:\n  web:\n    image: x\n    volumes: [\"data:/data\"]\n",
            &["services.web.volumes", "undefined volume \"data\""],
        ),
        (
            "services:\n  web:\n    image: x\n    networks: [front]\nnetworks:\n  front:\n  driver: overlay\n",
            &[
                "bad.yml:7:3",
                "networks.driver",
                "reads as a network called \"driver\"",
                "\"front\" above it has no settings",
            ],
        ),
        (
            "version: 3.8\nservices:\n  web:\n    image: x\n",
            &["bad.yml:1:10", "version must be a string"],
        ),
        (
            "services:\n  web:\n    image: x\n    mem_limit: 1g\n",
            &["services.web.mem_limit", "deploy.resources"],
        ),
        (
            "services:\n  web:\n    image: x\n    stop_grace_period: 10\n",
            &["services.web.stop_grace_period", "expected a string"],
        ),
        (
            "services:\n  web:\n    image: x\n    command: echo \"unclosed\n",
            &["services.web.command"],
        ),
    ];
    for (text, wanted) in cases {
        let message = refused(text);
        for w in *wanted {
            assert!(
                message.contains(w),
                "for\n{text}\nthe message\n{message}\ndoes not say {w:?}"
            );
        }
    }
}

#[test]
fn dot_env_beside_the_first_file_fills_variables_the_environment_lacks() {
    let (_guard, dir) = write_case(&[
        (
            "app/stack.yml",
            "services:\n  web:\n    image: \"busybox:${FROM_DOTENV}\"\n    environment:\n      TAG: ${TAG}\n",
        ),
        ("app/.env", "FROM_DOTENV=from-file\nTAG=not-this-one\n"),
    ]);
    let out = hive(&dir, &["app/stack.yml"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("image: busybox:from-file"), "{text}");
    assert!(
        text.contains("TAG: \"1.25\""),
        "the process environment wins: {text}"
    );
}
