//! The dashboard at the HTTP level: the token exchanged for a cookie, every refusal (no
//! cookie, a wrong token, a foreign Host or Origin, no Origin or CSRF token on a change), and
//! upload, live events, a streamed verified download and delete through the API.

use std::time::Duration;

use dstore::commands::{init, web, Session};
use dstore::config::{PartSize, StorageFormat};
use dstore::repo::repository::Secrets;
use futures::StreamExt;
use reqwest::header::{self, HeaderMap, HeaderValue};
use reqwest::StatusCode;

use crate::common::{random_bytes, upload, Env};

const PASS: &str = "a passphrase for the dashboard";

/// A format-2 session with a repository on the emulator.
pub async fn session2(env: &Env) -> Session {
    let mut s = env.session_with(|c| {
        c.format = StorageFormat::V2;
        c.part_size = PartSize::Auto;
    });
    s.secrets = Secrets::given(&[("DSTORE_PASSPHRASE", PASS)]);
    init::init(&s, false).await.unwrap();
    s
}

/// A running dashboard and a browser-like client signed in to it.
pub struct Dash {
    pub running: dstore::web::Running,
    pub base: String,
    pub http: reqwest::Client,
    pub cookie: String,
    pub csrf: String,
}

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

impl Dash {
    pub async fn start(s: &Session) -> Dash {
        let running = web::start(s, 0).await.unwrap();
        let base = format!("http://{}", running.addr());
        let http = client();
        let r = http.get(running.url()).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::SEE_OTHER);
        assert_eq!(
            r.headers()[header::LOCATION],
            "/",
            "the token is dropped from the URL"
        );
        let set = r.headers()[header::SET_COOKIE]
            .to_str()
            .unwrap()
            .to_string();
        assert!(
            set.contains("; HttpOnly") && set.contains("; SameSite=Strict"),
            "{set}"
        );
        let cookie = set.split(';').next().unwrap().to_string();
        let mut dash = Dash {
            running,
            base,
            http,
            cookie,
            csrf: String::new(),
        };
        let page = dash.get("/").await;
        assert_eq!(page.status(), StatusCode::OK);
        let html = page.text().await.unwrap();
        let at = html.find("name=\"csrf-token\" content=\"").unwrap() + 27;
        dash.csrf = html[at..at + 64].to_string();
        dash
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.http
            .get(self.url(path))
            .header(header::COOKIE, &self.cookie)
            .send()
            .await
            .unwrap()
    }

    /// The headers of a change as the page sends it.
    fn change(&self) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::COOKIE, HeaderValue::from_str(&self.cookie).unwrap());
        h.insert(header::ORIGIN, HeaderValue::from_str(&self.base).unwrap());
        h.insert("x-csrf-token", HeaderValue::from_str(&self.csrf).unwrap());
        h
    }

    pub async fn post(&self, path: &str, body: Vec<u8>) -> reqwest::Response {
        self.http
            .post(self.url(path))
            .headers(self.change())
            .body(body)
            .send()
            .await
            .unwrap()
    }

    pub async fn json(&self, path: &str) -> serde_json::Value {
        let r = self.get(path).await;
        assert_eq!(r.status(), StatusCode::OK, "{path}");
        r.json().await.unwrap()
    }
}

/// The names of the events read from `events` until one named `until` (or 20 s pass).
async fn events_until(events: reqwest::Response, until: &str) -> Vec<(String, String)> {
    let mut stream = events.bytes_stream();
    let mut text = String::new();
    let mut seen = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while let Ok(Some(Ok(chunk))) = tokio::time::timeout_at(deadline, stream.next()).await {
        text.push_str(&String::from_utf8_lossy(&chunk));
        while let Some(end) = text.find("\n\n") {
            let block: String = text.drain(..end + 2).collect();
            let name = block.lines().find_map(|l| l.strip_prefix("event: "));
            let data = block.lines().find_map(|l| l.strip_prefix("data: "));
            if let (Some(n), Some(d)) = (name, data) {
                seen.push((n.to_string(), d.to_string()));
                if n == until {
                    return seen;
                }
            }
        }
    }
    panic!("no `{until}` event; saw {seen:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_request_without_the_cookie_a_loopback_host_or_our_origin_is_refused() {
    let env = Env::new().await;
    let s = env.session();
    let dash = Dash::start(&s).await;
    let http = client();
    // No cookie: nothing is served, not even the script.
    for path in [
        "/",
        "/app.js",
        "/app.css",
        "/api/files",
        "/api/stats",
        "/api/events",
    ] {
        let r = http.get(dash.url(path)).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "{path}");
        assert!(r.headers().contains_key("content-security-policy"));
    }
    // A wrong token, and the right one anywhere but the page.
    let wrong = http
        .get(dash.url(&format!("/?token={}", "0".repeat(64))))
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), StatusCode::UNAUTHORIZED);
    assert!(!wrong.headers().contains_key(header::SET_COOKIE));
    let token = dash
        .running
        .url()
        .split("token=")
        .nth(1)
        .unwrap()
        .to_string();
    let elsewhere = http
        .get(dash.url(&format!("/api/files?token={token}")))
        .send()
        .await
        .unwrap();
    assert_eq!(elsewhere.status(), StatusCode::UNAUTHORIZED);
    // A foreign Host (DNS rebinding), even with the cookie or the token; loopback names pass.
    for host in [
        "evil.example",
        "evil.example:80",
        "127.0.0.1:1",
        "127.0.0.1",
    ] {
        let r = http
            .get(dash.url("/api/files"))
            .header(header::HOST, host)
            .header(header::COOKIE, &dash.cookie)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::FORBIDDEN, "{host}");
        let r = http
            .get(dash.running.url())
            .header(header::HOST, host)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::FORBIDDEN, "{host}");
    }
    let port = dash.running.addr().port();
    for host in [format!("localhost:{port}"), format!("[::1]:{port}")] {
        let r = http
            .get(dash.url("/api/files"))
            .header(header::HOST, &host)
            .header(header::COOKIE, &dash.cookie)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK, "{host}");
    }
    // A foreign Origin, on a read or a change.
    let r = http
        .get(dash.url("/api/files"))
        .header(header::COOKIE, &dash.cookie)
        .header(header::ORIGIN, "http://evil.example")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let id = upload(&s, &env.file("kept.bin", 1000)).await.unwrap().id;
    let delete = dash.url(&format!("/api/files/{id}/delete"));
    let cases: [(&str, Option<&str>, Option<&str>); 4] = [
        (
            "foreign origin",
            Some("http://evil.example"),
            Some(&dash.csrf),
        ),
        ("no origin", None, Some(&dash.csrf)),
        ("no csrf token", Some(&dash.base), None),
        ("wrong csrf token", Some(&dash.base), Some("0000")),
    ];
    for (what, origin, csrf) in cases {
        let mut req = http.post(&delete).header(header::COOKIE, &dash.cookie);
        if let Some(o) = origin {
            req = req.header(header::ORIGIN, o);
        }
        if let Some(c) = csrf {
            req = req.header("x-csrf-token", c);
        }
        let r = req.send().await.unwrap();
        assert_eq!(r.status(), StatusCode::FORBIDDEN, "{what}");
    }
    // Without the cookie, a change with every other header is refused too.
    let r = http
        .post(&delete)
        .header(header::ORIGIN, &dash.base)
        .header("x-csrf-token", &dash.csrf)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert!(
        s.catalog.contains(&id),
        "no refused request deleted anything"
    );
    // The page itself: a strict policy, its script a file, no inline script.
    let page = dash.get("/").await;
    let csp = page.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(
        csp.starts_with("default-src 'self'") && !csp.contains("unsafe-inline"),
        "{csp}"
    );
    let html = page.text().await.unwrap();
    assert!(html.contains("<script src=\"/app.js\" defer></script>"));
    assert_eq!(html.matches("<script").count(), 1, "no inline script");
    let js = dash.get("/app.js").await;
    assert!(js.headers()[header::CONTENT_TYPE]
        .to_str()
        .unwrap()
        .starts_with("text/javascript"));
    dash.running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upload_live_events_streamed_download_and_delete_through_the_api() {
    let env = Env::new().await;
    let s = session2(&env).await;
    let dash = Dash::start(&s).await;
    let events = dash.get("/api/events").await;
    assert_eq!(events.status(), StatusCode::OK);
    let watcher = tokio::spawn(events_until(events, "added"));
    let data = random_bytes(3 << 20, 7);
    let r = dash
        .post("/api/upload?name=photo%201.jpg&key=k-1", data.clone())
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    let up: serde_json::Value = r.json().await.unwrap();
    let id = up["id"].as_str().unwrap().to_string();
    assert_eq!(up["already"], false);
    let seen = watcher.await.unwrap();
    let phases: Vec<String> = seen
        .iter()
        .filter(|(n, _)| n == "progress")
        .map(|(_, d)| serde_json::from_str::<serde_json::Value>(d).unwrap())
        .filter(|p| p["key"] == "k-1")
        .map(|p| p["phase"].as_str().unwrap().to_string())
        .collect();
    for phase in ["receiving", "storing", "done"] {
        assert!(phases.iter().any(|p| p == phase), "{phase}: {seen:?}");
    }
    assert!(seen.last().unwrap().1.contains(&id));
    // Stored as `upload` stores it, the received copy gone.
    let m = s.catalog.load_file(&id).unwrap();
    assert_eq!(
        (m.name.as_str(), m.size, m.format),
        ("photo 1.jpg", data.len() as u64, 2)
    );
    let uploads = env.data_dir().join("web").join("uploads");
    assert_eq!(std::fs::read_dir(&uploads).unwrap().count(), 0);
    // The same bytes again: named, not sent again.
    let again: serde_json::Value = dash
        .post("/api/upload?name=copy.jpg", data.clone())
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        (again["id"].as_str(), again["already"].as_bool()),
        (Some(id.as_str()), Some(true))
    );

    let files = dash.json("/api/files").await;
    let row = &files["files"][0];
    assert_eq!(
        (row["id"].as_str(), row["status"].as_str()),
        (Some(id.as_str()), Some("complete"))
    );
    assert_eq!(row["size"], data.len() as u64);
    let stats = dash.json("/api/stats").await;
    assert_eq!(
        (stats["files_v2"].as_u64(), stats["encryption"].as_bool()),
        (Some(1), Some(true))
    );
    assert!(stats["packs"].as_u64().unwrap() >= 1);

    // The download streams from Discord, verified, under its name.
    let r = dash.get(&format!("/api/files/{id}/download")).await;
    assert_eq!(r.status(), StatusCode::OK);
    let cd = r.headers()[header::CONTENT_DISPOSITION]
        .to_str()
        .unwrap()
        .to_string();
    assert!(cd.contains("filename=\"photo 1.jpg\""), "{cd}");
    assert_eq!(r.content_length(), Some(data.len() as u64));
    assert!(r.bytes().await.unwrap() == data);

    // Names that are not one plain component are refused before anything is written.
    for name in ["..%2Fescape.bin", "a%2Fb", "..", "", "a%00b"] {
        let r = dash
            .post(&format!("/api/upload?name={name}"), b"x".to_vec())
            .await;
        assert_eq!(r.status(), StatusCode::BAD_REQUEST, "{name}");
    }
    assert!(!env.data_dir().join("web").join("escape.bin").exists());
    // A body of unknown length is refused (the free-space check needs it).
    let stream = futures::stream::iter([Ok::<_, std::io::Error>(vec![1u8; 10])]);
    let r = dash
        .http
        .post(dash.url("/api/upload?name=s.bin"))
        .headers(dash.change())
        .body(reqwest::Body::wrap_stream(stream))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::LENGTH_REQUIRED);

    // Delete: gone from the catalogue and the list, and the pages are told.
    let events = dash.get("/api/events").await;
    let watcher = tokio::spawn(events_until(events, "deleted"));
    tokio::time::sleep(Duration::from_millis(200)).await;
    let r = dash
        .post(&format!("/api/files/{id}/delete"), Vec::new())
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    assert!(watcher.await.unwrap().last().unwrap().1.contains(&id));
    assert!(!s.catalog.contains(&id));
    assert_eq!(
        dash.json("/api/files").await["files"]
            .as_array()
            .unwrap()
            .len(),
        0
    );
    let r = dash.get(&format!("/api/files/{id}/download")).await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    let r = dash.get("/api/files/..%2F..%2Fetc/download").await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    dash.running.stop().await;
}

/// Reads a download to its end: the bytes, and whether it ended in an error.
async fn read_all(r: reqwest::Response) -> (Vec<u8>, bool) {
    let mut out = Vec::new();
    let mut body = r.bytes_stream();
    while let Some(chunk) = body.next().await {
        match chunk {
            Ok(c) => out.extend_from_slice(&c),
            Err(_) => return (out, true),
        }
    }
    (out, false)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_download_that_fails_its_checks_is_cut_short_both_formats() {
    let env = Env::new().await;
    // Format 1: parts verified one by one, streamed.
    let s1 = env.session();
    let path = env.file("old.bin", 300_000);
    let m1 = upload(&s1, &path).await.unwrap();
    let dash = Dash::start(&s1).await;
    let (got, failed) = read_all(dash.get(&format!("/api/files/{}/download", m1.id)).await).await;
    assert!(!failed && got == std::fs::read(&path).unwrap());
    // A record whose whole SHA-256 is not the file's: every part checks, the end is held back.
    let mut bad = s1.catalog.load_file(&m1.id).unwrap();
    bad.sha256 = Some("ab".repeat(32));
    s1.catalog.save_file(&bad).unwrap();
    let r = dash.get(&format!("/api/files/{}/download", m1.id)).await;
    assert_eq!(r.status(), StatusCode::OK);
    let (got, failed) = read_all(r).await;
    assert!(failed, "the browser must see a failed download");
    assert!(got.len() < 300_000, "{} bytes arrived", got.len());
    dash.running.stop().await;

    // Format 2: a pack altered on Discord fails the chunk check; nothing past it goes out.
    let s2 = session2(&env).await;
    let data = random_bytes(2 << 20, 9);
    let p = env.dir.path().join("new.bin");
    std::fs::write(&p, &data).unwrap();
    let dash = Dash::start(&s2).await;
    let up: serde_json::Value = dash
        .post("/api/upload?name=new.bin", data.clone())
        .await
        .json()
        .await
        .unwrap();
    let id = up["id"].as_str().unwrap().to_string();
    let m2 = s2.catalog.load_file(&id).unwrap();
    let pack = m2.packs[0].attachment_id;
    let mut bytes = env.emu.attachment_bytes(pack).unwrap();
    bytes[100] ^= 0xff;
    assert!(env.emu.replace_attachment_bytes(pack, &bytes));
    let (got, failed) = read_all(dash.get(&format!("/api/files/{id}/download")).await).await;
    assert!(
        failed && got.len() < data.len(),
        "{} bytes, failed {failed}",
        got.len()
    );
    dash.running.stop().await;
}

/// The address in the lines `web` printed.
fn url_in(text: &str) -> Option<String> {
    text.split_whitespace()
        .find(|w| w.starts_with("http://127.0.0.1:") && w.contains("/?token="))
        .map(str::to_string)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dstore_web_serves_until_ctrl_c_and_prints_only_the_url_to_open() {
    use std::io::BufRead;
    let env = Env::new().await;
    let mut child = crate::cli::dstore(&env)
        .args(["web", "--port", "0"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            let _ = tx.send(line);
        }
    });
    let mut printed = String::new();
    let url = loop {
        let line = rx
            .recv_timeout(Duration::from_secs(30))
            .expect("web prints its URL");
        printed.push_str(&line);
        printed.push('\n');
        if let Some(u) = url_in(&line) {
            break u;
        }
    };
    let r = client().get(&url).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let token = url.split("token=").nth(1).unwrap();
    assert_eq!(printed.matches(token).count(), 1, "{printed}");
    // An upload through the page reports there, not on the terminal's stdout.
    let cookie = r.headers()[header::SET_COOKIE]
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_string();
    let base = url.split("/?").next().unwrap().to_string();
    let html = client()
        .get(format!("{base}/"))
        .header(header::COOKIE, &cookie)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let at = html.find("name=\"csrf-token\" content=\"").unwrap() + 27;
    let up = client()
        .post(format!("{base}/api/upload?name=quiet.bin"))
        .header(header::COOKIE, &cookie)
        .header(header::ORIGIN, &base)
        .header("x-csrf-token", &html[at..at + 64])
        .body(random_bytes(3000, 5))
        .send()
        .await
        .unwrap();
    assert_eq!(up.status(), StatusCode::OK);
    std::process::Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rest: Vec<String> = rx.try_iter().collect();
    assert!(rest.iter().any(|l| l == "Dashboard stopped."), "{rest:?}");
    assert!(
        !rest.iter().any(|l| l.contains("quiet.bin")),
        "the dashboard's upload printed on stdout: {rest:?}"
    );
    // The token is in no log.
    for entry in walk(&env.data_dir()) {
        let text = std::fs::read(&entry).unwrap_or_default();
        assert!(
            !String::from_utf8_lossy(&text).contains(token),
            "{}",
            entry.display()
        );
    }
    assert!(!String::from_utf8_lossy(&out.stderr).contains(token));
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn web_at_the_prompt_runs_in_the_background_until_web_stop() {
    let env = Env::new().await;
    let out = assert_cmd::Command::from_std(crate::cli::dstore(&env))
        .write_stdin("web --port 0\nweb\nlist\nweb stop\nweb stop\n")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let url = url_in(&stdout).expect("the URL");
    assert!(
        stdout.contains("The dashboard is running already."),
        "{stdout}"
    );
    assert!(
        stdout.contains("No files yet"),
        "the prompt went on: {stdout}"
    );
    assert!(stdout.contains("Dashboard stopped."), "{stdout}");
    assert!(
        stderr.contains("no dashboard is running; `web` starts one"),
        "{stderr}"
    );
    // Stopped: nothing listens there any more.
    assert!(client().get(&url).send().await.is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_stored_by_another_command_is_told_to_open_pages() {
    let env = Env::new().await;
    let s = env.session();
    let dash = Dash::start(&s).await;
    let events = dash.get("/api/events").await;
    let watcher = tokio::spawn(events_until(events, "changed"));
    // The watcher looks every 2 s; let it see the catalogue once before the change.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    upload(&s, &env.file("elsewhere.bin", 5000)).await.unwrap();
    watcher.await.unwrap();
    dash.running.stop().await;
}

/// A folder synced twice (one file edited between), its repository keys.
pub async fn synced_folder(env: &Env, s: &Session) -> std::path::PathBuf {
    let repo =
        dstore::commands::upload2::RepoKeys::from(s.repository().await.unwrap().unwrap().as_ref());
    let dir = env.dir.path().join("photos");
    std::fs::create_dir_all(dir.join("2024")).unwrap();
    std::fs::write(dir.join("2024/beach.jpg"), random_bytes(200_000, 1)).unwrap();
    std::fs::write(dir.join("notes.txt"), b"first version\n").unwrap();
    let cancel = tokio_util::sync::CancellationToken::new();
    dstore::commands::sync::sync_once(s, &repo, &dir, cancel.clone())
        .await
        .unwrap();
    std::fs::write(dir.join("notes.txt"), b"second version, longer\n").unwrap();
    dstore::commands::sync::sync_once(s, &repo, &dir, cancel)
        .await
        .unwrap();
    dir
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn synced_folders_are_in_the_tree_and_a_version_restores_into_a_new_folder() {
    let env = Env::new().await;
    let s = session2(&env).await;
    let dir = synced_folder(&env, &s).await;
    let dash = Dash::start(&s).await;
    let tree = dash.json("/api/files").await;
    let folder = &tree["folders"][0];
    assert_eq!(folder["name"], "photos");
    assert_eq!(folder["path"], dir.display().to_string());
    let seqs: Vec<u64> = folder["versions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["seq"].as_u64().unwrap())
        .collect();
    assert_eq!(seqs.len(), 2, "{folder}");
    let files = folder["files"].as_array().unwrap();
    let versions = |path: &str| {
        files
            .iter()
            .find(|f| f["path"] == path)
            .map(|f| (f["size"].as_u64().unwrap(), f["versions"].as_u64().unwrap()))
    };
    assert_eq!(versions("notes.txt"), Some((23, 2)));
    assert_eq!(versions("2024/beach.jpg"), Some((200_000, 1)));
    let id = folder["id"].as_str().unwrap().to_string();

    // The first snapshot, beside the original, nothing overwritten.
    let r = dash
        .post(
            &format!("/api/folders/{id}/restore?seq={}", seqs[0]),
            Vec::new(),
        )
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    let done: serde_json::Value = r.json().await.unwrap();
    let out = std::path::PathBuf::from(done["path"].as_str().unwrap());
    assert_eq!(
        out,
        env.dir
            .path()
            .join(format!("photos (restored {})", seqs[0]))
    );
    assert_eq!(
        std::fs::read(out.join("notes.txt")).unwrap(),
        b"first version\n"
    );
    assert_eq!(
        std::fs::read(out.join("2024/beach.jpg")).unwrap(),
        random_bytes(200_000, 1)
    );
    assert_eq!(
        std::fs::read(dir.join("notes.txt")).unwrap(),
        b"second version, longer\n"
    );
    // Again: a new name, never over the first restore.
    let again: serde_json::Value = dash
        .post(
            &format!("/api/folders/{id}/restore?seq={}", seqs[1]),
            Vec::new(),
        )
        .await
        .json()
        .await
        .unwrap();
    assert_ne!(again["path"], done["path"]);
    assert_eq!(
        std::fs::read(std::path::Path::new(again["path"].as_str().unwrap()).join("notes.txt"))
            .unwrap(),
        b"second version, longer\n"
    );
    // Unknown snapshots and folders, and a change without the CSRF token, are refused.
    for path in [
        format!("/api/folders/{id}/restore?seq=999"),
        "/api/folders/..%2F..%2Fetc/restore?seq=1".to_string(),
        "/api/folders/nope/restore?seq=1".to_string(),
    ] {
        assert_eq!(
            dash.post(&path, Vec::new()).await.status(),
            StatusCode::NOT_FOUND,
            "{path}"
        );
    }
    let r = dash
        .http
        .post(dash.url(&format!("/api/folders/{id}/restore?seq=1")))
        .header(header::COOKIE, &dash.cookie)
        .header(header::ORIGIN, &dash.base)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    dash.running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_format_1_session_uploads_and_downloads_through_the_dashboard() {
    let env = Env::new().await;
    let s = env.session();
    let dash = Dash::start(&s).await;
    let data = random_bytes(300_000, 11);
    let up: serde_json::Value = dash
        .post("/api/upload?name=old%20style.bin", data.clone())
        .await
        .json()
        .await
        .unwrap();
    let id = up["id"].as_str().unwrap().to_string();
    let m = s.catalog.load_file(&id).unwrap();
    assert_eq!((m.format, m.status), (1, dstore::catalog::Status::Complete));
    assert!(
        s.catalog.load_parts(&id).unwrap().parts.len() > 1,
        "several parts"
    );
    assert_eq!(env.stored_bytes(&s, &id), data);
    let r = dash.get(&format!("/api/files/{id}/download")).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert!(r.bytes().await.unwrap() == data);
    let stats = dash.json("/api/stats").await;
    assert_eq!(
        (stats["files_v1"].as_u64(), stats["format"].as_u64()),
        (Some(1), Some(1))
    );
    dash.running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upload_discord_refuses_fails_in_a_sentence_and_its_copy_serves_resume() {
    use dstore_emulator::{FaultAction, FaultRoute};
    let env = Env::new().await;
    let s = env.strict_session();
    let dash = Dash::start(&s).await;
    env.fault(FaultRoute::CreateMessage, 0, 100, FaultAction::Status(500));
    let r = dash
        .post(
            "/api/upload?name=unlucky.bin&key=k-9",
            random_bytes(200_000, 3),
        )
        .await;
    assert_eq!(r.status(), StatusCode::BAD_GATEWAY);
    let body: serde_json::Value = r.json().await.unwrap();
    assert!(
        body["error"].as_str().unwrap().contains("upload of "),
        "{body}"
    );
    let files = dash.json("/api/files").await;
    assert_eq!(files["files"][0]["status"], "incomplete");
    let id = files["files"][0]["id"].as_str().unwrap().to_string();
    // Its copy is kept as its source: `resume` finishes it.
    let uploads = env.data_dir().join("web").join("uploads");
    assert_eq!(std::fs::read_dir(&uploads).unwrap().count(), 1);
    env.emu.faults().clear();
    dash.running.stop().await;
    let done = crate::common::resume(&s, &id).await.unwrap();
    assert_eq!(done.status, dstore::catalog::Status::Complete);
    assert_eq!(env.stored_bytes(&s, &id), random_bytes(200_000, 3));
    // The next dashboard removes the copy nothing needs any more.
    let dash = Dash::start(&s).await;
    assert_eq!(std::fs::read_dir(&uploads).unwrap().count(), 0);
    dash.running.stop().await;
}
