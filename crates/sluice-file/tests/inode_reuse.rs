//! Inode reuse through a real pipeline: a deleted file's inode handed to a
//! new file with other content, across a restart and while running. The
//! tests take turns (one lock) so that neither takes the other's inode.

mod common;

use std::os::unix::fs::MetadataExt;

use common::*;

static TURN: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Deletes `path` and creates it again with `content` and the old inode
/// (ext4 hands a freed inode out again quickly). Candidates are made under
/// names the source does not follow, the winner is renamed into place.
fn recreate_with_same_inode(path: &std::path::Path, content: &[u8]) -> bool {
    let old = std::fs::metadata(path).unwrap().ino();
    std::fs::remove_file(path).unwrap();
    recreate_with_same_inode_from(path, old, content)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inode_reuse_across_a_restart_is_a_new_file() {
    let _turn = TURN.lock().await;
    // Longer than the old offset, so only the fingerprint tells them apart.
    let content: String = seq("b", 0..2000).map(|l| l + "\n").collect();
    // Other processes create files too and may take the freed inode: retry
    // with a fresh directory.
    for _attempt in 0..5 {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let log = dir.path().join("app.log");
        append(&log, seq("a", 0..1000));
        let mut run = start(&data, opts(log.to_str().unwrap()));
        assert!(wait_until(10, || run.got.len() >= 1000).await);
        run.stop().await.unwrap();
        if !recreate_with_same_inode(&log, content.as_bytes()) {
            continue;
        }
        let mut run = start(&data, opts(log.to_str().unwrap()));
        assert!(wait_until(10, || has_all(&run.got, "b", 0..2000)).await);
        run.stop().await.unwrap();
        assert_exactly_once(&run.got, "b", 0..2000);
        assert_eq!(run.got.len(), 2000);
        return;
    }
    panic!("no inode reuse in 5 attempts");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inode_reuse_while_running_is_a_new_file() {
    let _turn = TURN.lock().await;
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("app.log");
    // Checkpoint files elsewhere, so they do not take the freed inode.
    let data = tempfile::tempdir_in("/dev/shm").unwrap();
    let mut run = start(data.path(), opts(log.to_str().unwrap()));
    let content: String = seq("b", 0..2000).map(|l| l + "\n").collect();
    // Other tests create files too and may take the freed inode: retry.
    let mut reused = false;
    for attempt in 0..5 {
        let prefix = format!("a{attempt}");
        append(&log, seq(&prefix, 0..1000));
        assert!(wait_until(10, || has_all(&run.got, &prefix, 0..1000)).await);
        let old = std::fs::metadata(&log).unwrap().ino();
        std::fs::remove_file(&log).unwrap();
        // Give the reader time to see the deletion and close the old inode.
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        if recreate_with_same_inode_from(&log, old, content.as_bytes()) {
            reused = true;
            break;
        }
    }
    assert!(reused, "no inode reuse");
    assert!(wait_until(10, || has_all(&run.got, "b", 0..2000)).await);
    run.stop().await.unwrap();
    assert_exactly_once(&run.got, "b", 0..2000);
}

fn recreate_with_same_inode_from(path: &std::path::Path, ino: u64, content: &[u8]) -> bool {
    let dir = path.parent().unwrap();
    let mut spare = Vec::new();
    let mut won = false;
    for i in 0..2000 {
        let candidate = dir.join(format!("hunt-{i}"));
        std::fs::write(&candidate, content).unwrap();
        if std::fs::metadata(&candidate).unwrap().ino() == ino {
            std::fs::rename(&candidate, path).unwrap();
            won = true;
            break;
        }
        spare.push(candidate);
    }
    for s in spare {
        let _ = std::fs::remove_file(s);
    }
    won
}
