//! Encryption at rest and autolock (issue 18, items 3 and 4), on one lab swarm of three
//! managers: a copy of a manager's data directory reveals no secret, join token, CA key or
//! unlock key; `swarm update --autolock=true` locks restarted managers, which refuse the
//! cluster API with Docker's message until `swarm unlock` is given the right key; a rotated
//! key replaces the old one on each manager as it learns of it. While the swarm is locked, each
//! manager's TLS key is sealed with its KEK too.

use crate::support;

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use hive::encryption::{Key, KeyFile, StoreKeys, UnlockKey};
use support::{HIVE, PATIENCE, Swarm, privileged, text, wait_output};

const LOCKED: &str = "Swarm is encrypted and needs to be unlocked before it can be used. Please use \"hive swarm unlock\" to unlock it.";
/// What a service's spec carries that must never be readable on a manager's disk.
const SECRET: &str = "cry-sekret-5f1c9a0e7b";

fn data_dir(swarm: &Swarm, node: &str) -> PathBuf {
    swarm
        .lab()
        .member(node)
        .expect("lab member")
        .data_dir
        .clone()
        .expect("the node's data directory")
}

fn key_file(swarm: &Swarm, node: &str) -> String {
    std::fs::read_to_string(data_dir(swarm, node).join("certificates/swarm-raft-keys.json"))
        .unwrap_or_default()
}

/// Waits until `node`'s key file satisfies `check`.
fn wait_key_file(swarm: &Swarm, node: &str, what: &str, check: impl Fn(&str) -> bool) {
    let deadline = Instant::now() + PATIENCE;
    while !check(&key_file(swarm, node)) {
        assert!(
            Instant::now() < deadline,
            "{node}: {what} not seen in its key file"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// `node`'s store keys as its key file holds them (opened with `unlock` if locked).
fn store_keys(swarm: &Swarm, node: &str, unlock: Option<&UnlockKey>) -> StoreKeys {
    KeyFile::load(&data_dir(swarm, node))
        .expect("reading the key file")
        .expect("a manager has a key file")
        .unwrap_keys(unlock)
        .expect("opening the key file")
}

/// How many service records a copy of `node`'s store holds, and how many of them open with
/// `dek`.
fn services_opened_with(swarm: &Swarm, node: &str, dek: &Key) -> (usize, usize) {
    use redb::{ReadableDatabase as _, ReadableTable as _};
    const SERVICES: redb::TableDefinition<'static, &'static str, &'static [u8]> =
        redb::TableDefinition::new("services");
    let (copy, _) = copy_of(&data_dir(swarm, node));
    let db = redb::Database::open(copy.path().join("raft/state.redb")).expect("open the copy");
    let read = db.begin_read().expect("read transaction");
    let table = read.open_table(SERVICES).expect("services table");
    let (mut total, mut opened) = (0, 0);
    for row in table.iter().expect("rows") {
        let (_, value) = row.expect("row");
        total += 1;
        let sealed = value.value().strip_prefix(b"\0hv1".as_slice());
        if sealed.is_some_and(|sealed| dek.open(sealed).is_ok()) {
            opened += 1;
        }
    }
    (total, opened)
}

/// `hive swarm unlock` on `node` with `key` on stdin.
fn unlock(swarm: &Swarm, node: &str, key: &str) -> std::process::Output {
    let mut command = swarm.lab().command(node, HIVE).expect("lab command");
    command
        .args(["swarm", "unlock"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = command.spawn().expect("spawn hive");
    let mut stdin = child.stdin.take().expect("stdin");
    stdin
        .write_all(format!("{key}\n").as_bytes())
        .expect("write the key");
    drop(stdin);
    wait_output(child, "hive swarm unlock")
}

fn unlock_key_of(output: &str) -> String {
    output
        .split_whitespace()
        .find(|w| w.starts_with("SWMKEY-1-"))
        .unwrap_or_else(|| panic!("no unlock key in {output:?}"))
        .to_owned()
}

fn assert_locked(swarm: &Swarm, node: &str) {
    let refused = swarm.hive_err(node, &["node", "ls"]);
    assert!(
        refused.contains(LOCKED),
        "node ls on locked {node}: {refused}"
    );
    let info = swarm.hive_ok(node, &["info"]);
    assert!(info.contains("Swarm: locked"), "{info}");
}

/// Waits until `node` answers `node ls` with three ready managers.
fn wait_serving(swarm: &Swarm, node: &str) {
    swarm.wait_nodes("three ready managers", &[node], |nodes| {
        nodes.len() == 3
            && nodes.iter().all(|n| {
                n.status
                    .as_ref()
                    .is_some_and(|s| s.state == hive::api::pb::NodeState::Ready as i32)
            })
    });
}

/// Every regular file under `dir`, copied to a fresh directory (as a thief would), with its
/// path relative to `dir` and its bytes.
fn copy_of(dir: &Path) -> (tempfile::TempDir, Vec<(PathBuf, Vec<u8>)>) {
    let copy = tempfile::tempdir().expect("tempdir");
    let mut files = Vec::new();
    let mut pending = vec![dir.to_owned()];
    while let Some(current) = pending.pop() {
        for entry in std::fs::read_dir(&current).expect("list") {
            let entry = entry.expect("entry");
            let kind = entry.file_type().expect("file type");
            let path = entry.path();
            if kind.is_dir() {
                pending.push(path);
            } else if kind.is_file() {
                let relative = path.strip_prefix(dir).expect("under dir").to_owned();
                let target = copy.path().join(&relative);
                std::fs::create_dir_all(target.parent().expect("parent")).expect("mkdir");
                std::fs::copy(&path, &target).expect("copy");
                files.push((relative, std::fs::read(&target).expect("read the copy")));
            }
        }
    }
    (copy, files)
}

/// The files of the copy of `node`'s data directory that contain `needle`.
fn holders(files: &[(PathBuf, Vec<u8>)], needle: &str) -> Vec<PathBuf> {
    files
        .iter()
        .filter(|(_, bytes)| bytes.windows(needle.len()).any(|w| w == needle.as_bytes()))
        .map(|(path, _)| path.clone())
        .collect()
}

/// Where a manager keeps its TLS key.
const TLS_KEY: &str = "certificates/swarm-node.key";

fn tls_key(swarm: &Swarm, node: &str) -> String {
    std::fs::read_to_string(data_dir(swarm, node).join(TLS_KEY)).unwrap_or_default()
}

/// `needles` are nowhere on a copy of `node`'s disk, and no PEM private key is either, but
/// the node's own TLS key while it is in the clear (autolock off).
fn assert_nothing_readable(swarm: &Swarm, node: &str, needles: &[&str], tls_key_sealed: bool) {
    let (_copy, files) = copy_of(&data_dir(swarm, node));
    assert!(
        files.iter().any(|(p, _)| p.ends_with("state.redb")),
        "the copy holds the store"
    );
    for needle in needles {
        assert_eq!(
            holders(&files, needle),
            Vec::<PathBuf>::new(),
            "{needle:?} readable on {node}'s disk"
        );
    }
    // The root CA's key is in the store, sealed; the node's own TLS key is sealed with its
    // KEK while autolock is on.
    let expected = if tls_key_sealed {
        Vec::new()
    } else {
        vec![PathBuf::from(TLS_KEY)]
    };
    assert_eq!(
        holders(&files, "PRIVATE KEY"),
        expected,
        "a private key readable on {node}'s disk"
    );
}

/// With autolock on, `node`'s TLS key on disk is not a key: not PEM "PRIVATE KEY", not
/// loadable without the KEK; with the KEK (which the unlock key opens) it is the key of the
/// node's certificate.
fn assert_tls_key_sealed(swarm: &Swarm, node: &str, unlock: &UnlockKey) {
    let deadline = Instant::now() + PATIENCE;
    while tls_key(swarm, node).contains("PRIVATE KEY") {
        assert!(
            Instant::now() < deadline,
            "{node}: its TLS key is still in the clear"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let (copy, _) = copy_of(&data_dir(swarm, node));
    let text = std::fs::read_to_string(copy.path().join(TLS_KEY)).expect("the key file");
    assert!(
        hive::pki::NodeKey::from_pem(&text).is_err(),
        "{node}: the key file parses as a plain key"
    );
    let certs = hive::pki::CertDir::in_data_dir(copy.path());
    let refused = certs
        .load(std::time::SystemTime::now())
        .expect_err("a sealed key loads without the KEK");
    assert!(
        refused.to_string().contains("hive swarm unlock"),
        "{node}: {refused}"
    );
    let kek = store_keys(swarm, node, Some(unlock)).kek;
    let creds = certs
        .load_with(std::time::SystemTime::now(), Some(&kek))
        .expect("the sealed key opens with the KEK");
    assert_eq!(creds.identity().role, hive::pki::Role::Manager);
}

#[test]
fn autolock_and_encryption_at_rest() {
    if !privileged("autolock_and_encryption_at_rest") {
        return;
    }
    let _serial = support::serial();
    let mut swarm = Swarm::up("cry", 3, 3);

    // Cluster state worth stealing: a service's env and labels, the join tokens.
    swarm.hive_ok(
        "n1",
        &[
            "service",
            "create",
            "-d",
            "--name",
            "cryweb",
            "--replicas",
            "1",
            "--env",
            &format!("CRY_TOKEN={SECRET}"),
            "--label",
            &format!("cry.note={SECRET}"),
            "hive/whoami",
        ],
    );
    let worker_token = swarm.hive_ok("n1", &["swarm", "join-token", "-q", "worker"]);
    let manager_token = swarm.hive_ok("n1", &["swarm", "join-token", "-q", "manager"]);
    let (worker_token, manager_token) = (worker_token.trim(), manager_token.trim());
    // The secret part of each token (the CA digest in it is public).
    let worker_secret = worker_token.rsplit('-').next().expect("token secret");
    let manager_secret = manager_token.rsplit('-').next().expect("token secret");
    swarm.wait_nodes("the service everywhere", &["n1", "n2", "n3"], |_| true);
    for node in ["n1", "n2", "n3"] {
        assert_nothing_readable(
            &swarm,
            node,
            &[SECRET, worker_secret, manager_secret],
            false,
        );
    }

    // The keys each manager has before the lock: their KEK lies in the clear on disk.
    let unlocked_keys: Vec<StoreKeys> = ["n1", "n2", "n3"]
        .iter()
        .map(|node| store_keys(&swarm, node, None))
        .collect();

    // Lock.
    let updated = swarm.hive_ok("n1", &["swarm", "update", "--autolock=true"]);
    assert!(updated.starts_with("Swarm updated.\n"), "{updated}");
    assert!(
        updated
            .contains("To unlock a swarm manager after it restarts, run the `hive swarm unlock`"),
        "{updated}"
    );
    let first = unlock_key_of(&updated);
    assert_eq!(
        swarm.hive_ok("n2", &["swarm", "unlock-key", "-q"]).trim(),
        first
    );
    wait_key_file(&swarm, "n3", "the lock", |f| f.contains("\"locked\""));

    // Locking rotated every manager's keys and re-sealed its store: a copy of the key file
    // from before the lock opens nothing on the disk now; the new keys open everything.
    let unlock_key: UnlockKey = first.parse().expect("the printed unlock key parses");
    for (node, old) in ["n1", "n2", "n3"].into_iter().zip(&unlocked_keys) {
        wait_key_file(&swarm, node, "the end of the data key rotation", |f| {
            f.contains("\"locked\"") && !f.contains("previous_dek")
        });
        let new = store_keys(&swarm, node, Some(&unlock_key));
        assert_ne!(
            new.dek.as_bytes(),
            old.dek.as_bytes(),
            "{node}: DEK rotated"
        );
        assert_ne!(
            new.kek.as_bytes(),
            old.kek.as_bytes(),
            "{node}: KEK rotated"
        );
        let (total, with_new) = services_opened_with(&swarm, node, &new.dek);
        assert!(total > 0, "{node}: the copy holds services");
        assert_eq!(
            with_new, total,
            "{node}: every service sealed with the new DEK"
        );
        let (_, with_old) = services_opened_with(&swarm, node, &old.dek);
        assert_eq!(
            with_old, 0,
            "{node}: the DEK from before the lock opens nothing"
        );
    }
    // Every manager's TLS key is sealed with its KEK: a stolen disk of a locked manager
    // does not give away the node's identity.
    for node in ["n1", "n2", "n3"] {
        assert_tls_key_sealed(&swarm, node, &unlock_key);
    }

    // A restarted manager is locked; a wrong key is refused and changes nothing.
    swarm.restart("n3");
    assert_locked(&swarm, "n3");
    let wrong = "SWMKEY-1-WuYH/IX284+lRcXuoVf38viIDK3HJEKY13MIHX+tTt8";
    let refused = unlock(&swarm, "n3", wrong);
    assert!(!refused.status.success());
    assert!(
        text(&refused.stderr).contains("swarm could not be unlocked: invalid key provided"),
        "{}",
        text(&refused.stderr)
    );
    assert_locked(&swarm, "n3");
    let out = unlock(&swarm, "n3", &first);
    assert!(out.status.success(), "unlock: {}", text(&out.stderr));
    wait_serving(&swarm, "n3");

    // Rotation while n3 is down: n3's disk still opens with the old key (it never saw the
    // new one), then holds the new one once it has caught up.
    swarm.kill("n3");
    let rotated = swarm.hive_ok("n1", &["swarm", "unlock-key", "--rotate"]);
    assert!(
        rotated.starts_with("Successfully rotated manager unlock key.\n"),
        "{rotated}"
    );
    let second = unlock_key_of(&rotated);
    assert_ne!(second, first);
    swarm.restart("n3");
    assert_locked(&swarm, "n3");
    let before = key_file(&swarm, "n3");
    assert!(
        !unlock(&swarm, "n3", &second).status.success(),
        "the new key before n3 has it"
    );
    let out = unlock(&swarm, "n3", &first);
    assert!(
        out.status.success(),
        "unlock with the old key: {}",
        text(&out.stderr)
    );
    wait_serving(&swarm, "n3");
    wait_key_file(&swarm, "n3", "the rotation", |f| {
        f != before && f.contains("\"locked\"")
    });
    swarm.restart("n3");
    assert_locked(&swarm, "n3");
    assert!(
        !unlock(&swarm, "n3", &first).status.success(),
        "the old key after the rotation"
    );
    let out = unlock(&swarm, "n3", &second);
    assert!(
        out.status.success(),
        "unlock with the new key: {}",
        text(&out.stderr)
    );
    wait_serving(&swarm, "n3");

    // Nothing of it is readable on any manager's disk, the unlock keys included.
    for node in ["n1", "n2", "n3"] {
        assert_nothing_readable(
            &swarm,
            node,
            &[
                SECRET,
                worker_secret,
                manager_secret,
                &first[9..],
                &second[9..],
            ],
            true,
        );
    }
    // The TLS key is still sealed with the KEK, which only the new unlock key opens now.
    let second_key: UnlockKey = second.parse().expect("the rotated key parses");
    for node in ["n1", "n2", "n3"] {
        assert_tls_key_sealed(&swarm, node, &second_key);
    }

    // Unlocked again: restarted managers serve at once.
    swarm.hive_ok("n1", &["swarm", "update", "--autolock=false"]);
    let none = swarm.hive_err("n1", &["swarm", "unlock-key"]);
    assert!(none.contains("no unlock key is set"), "{none}");
    wait_key_file(&swarm, "n3", "the unlock", |f| f.contains("\"plain\""));
    // Its TLS key is in the clear again, as Docker keeps it without autolock.
    let deadline = Instant::now() + PATIENCE;
    while hive::pki::NodeKey::from_pem(&tls_key(&swarm, "n3")).is_err() {
        assert!(
            Instant::now() < deadline,
            "n3: its TLS key is still sealed after autolock was turned off"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    swarm.restart("n3");
    wait_serving(&swarm, "n3");
}
