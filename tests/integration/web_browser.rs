//! The dashboard in a real headless Chromium, through chromedriver (WebDriver): sign in with
//! the token URL, see the tree and the figures, upload through the file input and watch its
//! progress, see a file stored by another command appear live, download and compare the bytes,
//! delete after the confirmation; without the cookie nothing is shown. Screenshots (desktop and
//! a phone's 375 px) go to target/web-dashboard*.png. Chromium and chromedriver must be
//! installed (Debian: `apt-get install chromium chromium-driver`; .ci/run does): without them
//! this test fails, it never skips.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::json;

use crate::common::{random_bytes, Env};
use crate::web::{session2, Dash};

const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
const CHROMIUM: &str = "/usr/bin/chromium";

/// chromedriver on a free loopback port, killed when dropped.
struct Driver {
    child: Child,
    url: String,
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn chromedriver() -> Driver {
    for path in [CHROMEDRIVER, CHROMIUM] {
        assert!(
            Path::new(path).exists(),
            "{path} is missing: install Chromium and its driver (`apt-get install chromium chromium-driver`); this test does not skip"
        );
    }
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let child = Command::new(CHROMEDRIVER)
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("chromedriver starts");
    let url = format!("http://127.0.0.1:{port}");
    let driver = Driver { child, url };
    let status = format!("{}/status", driver.url);
    for _ in 0..100 {
        if let Ok(r) = reqwest::get(&status).await {
            if r.status().is_success() {
                return driver;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("chromedriver did not answer on {status}");
}

async fn browser(driver: &Driver, profile: &Path, downloads: &Path) -> Client {
    let caps = json!({
        "browserName": "chrome",
        "goog:chromeOptions": {
            "binary": CHROMIUM,
            "args": [
                "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                "--no-first-run", "--no-default-browser-check", "--window-size=1280,900",
                format!("--user-data-dir={}", profile.display()),
            ],
            "prefs": {
                "download.default_directory": downloads.display().to_string(),
                "download.prompt_for_download": false,
                "download.directory_upgrade": true,
                "safebrowsing.enabled": false,
            },
        },
    });
    let serde_json::Value::Object(caps) = caps else {
        unreachable!()
    };
    let connector = hyper_util::client::legacy::connect::HttpConnector::new();
    ClientBuilder::new(connector)
        .capabilities(caps)
        .connect(&driver.url)
        .await
        .expect("a Chromium session")
}

/// Waits until the script `condition` (a JS expression) is true in the page.
async fn until(c: &Client, condition: &str, what: &str) {
    let script = format!("return !!({condition});");
    for _ in 0..300 {
        if c.execute(&script, vec![]).await.unwrap() == json!(true) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let page = c
        .execute(
            "return document.querySelector('#live').textContent + ' | ' + document.body.innerText;",
            vec![],
        )
        .await
        .unwrap_or_default();
    panic!("timed out waiting for {what} ({condition}); the page shows: {page}");
}

async fn text(c: &Client, css: &str) -> String {
    c.find(Locator::Css(css))
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

fn target_dir() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("target");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// The download of `name` in `dir` once complete (Chromium writes `.crdownload` first).
async fn downloaded(dir: &Path, name: &str) -> Vec<u8> {
    let path = dir.join(name);
    for _ in 0..300 {
        let partial = std::fs::read_dir(dir)
            .unwrap()
            .flatten()
            .any(|e| e.file_name().to_string_lossy().ends_with(".crdownload"));
        if path.exists() && !partial {
            return std::fs::read(&path).unwrap();
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{} was not downloaded", path.display());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_in_a_real_browser() {
    let env = Env::new().await;
    let s = session2(&env).await;
    let dash = Dash::start(&s).await;
    let driver = chromedriver().await;
    let profile = env.dir.path().join("chromium-profile");
    let downloads = env.dir.path().join("downloads");
    std::fs::create_dir_all(&downloads).unwrap();
    let c = browser(&driver, &profile, &downloads).await;

    // Without the cookie the page is refused.
    c.goto(&format!("{}/", dash.base)).await.unwrap();
    assert!(text(&c, "body").await.contains("not signed in"));

    // The token URL signs in, and the token leaves the address bar.
    c.goto(dash.running.url()).await.unwrap();
    let at = c.current_url().await.unwrap();
    assert_eq!(at.as_str(), format!("{}/", dash.base));
    assert!(at.query().is_none());
    until(
        &c,
        "document.querySelector('#live').dataset.state === 'open'",
        "the live connection",
    )
    .await;
    until(
        &c,
        "!document.querySelector('#empty').hidden",
        "the empty tree",
    )
    .await;
    assert!(text(&c, "#tree").await.contains("Uploaded files"));
    until(
        &c,
        "document.querySelector('[data-stat=encryption]').textContent === 'on'",
        "the figures",
    )
    .await;

    // Upload through the file input: the progress bar ends stored, the row appears.
    let data = random_bytes(1_500_000, 42);
    let path = env.dir.path().join("holiday photo.jpg");
    std::fs::write(&path, &data).unwrap();
    let input = c.find(Locator::Css("#file-input")).await.unwrap();
    input.send_keys(&path.display().to_string()).await.unwrap();
    until(
        &c,
        "document.querySelector('.upload[data-phase=done]')",
        "the upload to finish",
    )
    .await;
    assert!(text(&c, ".upload .state").await.starts_with("stored as "));
    until(
        &c,
        "document.querySelector('.row.file[data-name=\"holiday photo.jpg\"]')",
        "the new row",
    )
    .await;
    let id = s
        .catalog
        .all()
        .unwrap()
        .into_iter()
        .flatten()
        .find(|m| m.name == "holiday photo.jpg")
        .unwrap()
        .id;
    let row = text(&c, &format!(".row.file[data-id=\"{id}\"]")).await;
    assert!(
        row.contains("1.4 MiB") && row.contains("just now") && row.contains("complete"),
        "{row}"
    );
    until(
        &c,
        "document.querySelector('[data-stat=files]').textContent === '1'",
        "the figures to follow",
    )
    .await;

    // A file stored by another command appears without a reload (the live update).
    let other = env.dir.path().join("notes.txt");
    std::fs::write(&other, random_bytes(20_000, 5)).unwrap();
    let keys =
        dstore::commands::upload2::RepoKeys::from(s.repository().await.unwrap().unwrap().as_ref());
    dstore::commands::upload2::upload(
        &s,
        &keys,
        &other,
        true,
        tokio_util::sync::CancellationToken::new(),
    )
    .await
    .unwrap();
    until(
        &c,
        "document.querySelector('.row.file[data-name=\"notes.txt\"]')",
        "the live update",
    )
    .await;
    until(
        &c,
        "document.querySelector('[data-stat=files]').textContent === '2'",
        "the figures of the live update",
    )
    .await;

    // Screenshots: desktop, then a phone's width.
    std::fs::write(
        target_dir().join("web-dashboard.png"),
        c.screenshot().await.unwrap(),
    )
    .unwrap();
    c.set_window_size(375, 812).await.unwrap();
    let overflow = c
        .execute(
            "return document.documentElement.scrollWidth - document.documentElement.clientWidth;",
            vec![],
        )
        .await
        .unwrap();
    assert!(
        overflow.as_i64().unwrap() <= 0,
        "the page scrolls sideways at 375 px: {overflow}"
    );
    std::fs::write(
        target_dir().join("web-dashboard-phone.png"),
        c.screenshot().await.unwrap(),
    )
    .unwrap();
    c.set_window_size(1280, 900).await.unwrap();

    // Download by the row's link: the same bytes.
    c.find(Locator::Css(&format!("a.download[data-id=\"{id}\"]")))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    assert!(
        downloaded(&downloads, "holiday photo.jpg").await == data,
        "the downloaded bytes differ"
    );

    // Delete: asked first; Cancel keeps it, Delete removes it.
    let delete = format!("button.delete[data-id=\"{id}\"]");
    c.find(Locator::Css(&delete))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    until(
        &c,
        "document.querySelector('#confirm').open",
        "the confirmation",
    )
    .await;
    assert!(text(&c, "#confirm-title")
        .await
        .contains("holiday photo.jpg"));
    std::fs::write(
        target_dir().join("web-dashboard-confirm.png"),
        c.screenshot().await.unwrap(),
    )
    .unwrap();
    c.find(Locator::Css("#confirm button[value=cancel]"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(s.catalog.contains(&id), "Cancel deleted nothing");
    c.find(Locator::Css(&delete))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    until(
        &c,
        "document.querySelector('#confirm').open",
        "the confirmation",
    )
    .await;
    c.find(Locator::Css("#confirm-yes"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    until(
        &c,
        &format!("!document.querySelector('.row.file[data-id=\"{id}\"]')"),
        "the row to go",
    )
    .await;
    assert!(!s.catalog.contains(&id));

    // A folder synced meanwhile appears live; expanded, its files show their versions; a
    // version restores into a new folder after the confirmation.
    let dir = crate::web::synced_folder(&env, &s).await;
    until(
        &c,
        "document.querySelector('details.folder[data-key^=\"folder:\"]')",
        "the synced folder",
    )
    .await;
    let folder = c
        .find(Locator::Css(
            "details.folder[data-key^=\"folder:\"] > summary .label",
        ))
        .await
        .unwrap();
    assert_eq!(folder.text().await.unwrap(), "photos");
    folder.click().await.unwrap();
    until(
        &c,
        "document.querySelector('.row.file[data-path=\"notes.txt\"]')",
        "the folder's files",
    )
    .await;
    let notes = text(&c, ".row.file[data-path=\"notes.txt\"] .cell-versions").await;
    assert_eq!(notes, "2");
    c.find(Locator::Css("button.restore"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    until(
        &c,
        "document.querySelector('#confirm').open && document.querySelector('#restore-version')",
        "the restore dialog",
    )
    .await;
    std::fs::write(
        target_dir().join("web-dashboard-restore.png"),
        c.screenshot().await.unwrap(),
    )
    .unwrap();
    c.find(Locator::Css("#confirm-yes"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    until(&c, "[...document.querySelectorAll('.toast')].some(t => t.textContent.startsWith('Restored photos'))", "the restore").await;
    let restored = dir.with_file_name("photos (restored 2)");
    assert_eq!(
        std::fs::read(restored.join("notes.txt")).unwrap(),
        b"second version, longer\n"
    );
    std::fs::write(
        target_dir().join("web-dashboard.png"),
        c.screenshot().await.unwrap(),
    )
    .unwrap();

    c.close().await.unwrap();
    dash.running.stop().await;
}
