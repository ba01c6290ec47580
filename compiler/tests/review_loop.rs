//! The review loop of `.github/scripts/plan-review.sh`, run the way CI runs it: against plans and
//! captured states in a scratch folder, posting to local emulations of GitHub's issue-comments
//! API and GitLab's merge-request notes API that check every request as their documentation
//! describes it, with every program the script starts logging its arguments.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use serde_json::{Value, json};

/// The token the job holds; it must reach the API in one header and nowhere else.
const TOKEN: &str = "ghs_review0loop0token0that0must0never0be0seen";
const REPO: &str = "acme/vault-moves";
/// GitHub's pagination links name the repository by id.
const REPO_ID: u64 = 4242;
const NUMBER: u64 = 7;
const GITLAB_PROJECT: u64 = 42;
/// Comments per page, whatever `per_page` asks, so that the script must follow `rel="next"`.
const PAGE: usize = 2;
const BOT: &str = "github-actions[bot]";
const AKS: &str = "plans/vault-aks-migration.yaml";

/// Environment variables for the script.
type Env = Vec<(&'static str, String)>;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace")
        .to_path_buf()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

// ---------------------------------------------------------------------------------------------
// The forges.

#[derive(Clone, Copy)]
enum Api {
    GitHub,
    GitLab,
}

#[derive(Clone)]
struct Comment {
    id: u64,
    author: String,
    body: String,
    /// GitLab's notes about pushes and the like; they are listed with the others.
    system: bool,
}

impl Comment {
    fn by(author: &str, body: &str) -> Comment {
        Comment {
            id: 0,
            author: author.to_string(),
            body: body.to_string(),
            system: false,
        }
    }
}

/// What a forge holds and saw.
struct Forge {
    api: Api,
    /// Every write is refused as a token without `pull-requests: write` is.
    read_only: bool,
    comments: Vec<Comment>,
    next_id: u64,
    /// `METHOD path?query` of every request, in order.
    requests: Vec<String>,
    /// Every way a request broke the documented rules.
    problems: Vec<String>,
}

struct Server {
    /// GITHUB_API_URL, or CI_API_V4_URL for GitLab.
    base: String,
    forge: Arc<Mutex<Forge>>,
}

impl Server {
    fn start(api: Api, seed: Vec<Comment>, read_only: bool) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").expect("a local port");
        let origin = format!("http://{}", listener.local_addr().expect("address"));
        let base = match api {
            Api::GitHub => origin.clone(),
            Api::GitLab => format!("{origin}/api/v4"),
        };
        let comments = seed
            .into_iter()
            .enumerate()
            .map(|(index, comment)| Comment {
                id: 1000 + index as u64,
                ..comment
            })
            .collect();
        let forge = Arc::new(Mutex::new(Forge {
            api,
            read_only,
            comments,
            next_id: 5000,
            requests: Vec::new(),
            problems: Vec::new(),
        }));
        let shared = Arc::clone(&forge);
        let served_base = base.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                serve(stream, &served_base, &shared);
            }
        });
        Server { base, forge }
    }

    fn forge(&self) -> MutexGuard<'_, Forge> {
        self.forge.lock().expect("forge lock")
    }

    fn comments(&self) -> Vec<Comment> {
        self.forge().comments.clone()
    }

    fn requests(&self) -> Vec<String> {
        self.forge().requests.clone()
    }

    fn clear_requests(&self) {
        self.forge().requests.clear();
    }

    /// The requests with this method since the last `clear_requests`.
    fn count(&self, method: &str) -> usize {
        let prefix = format!("{method} ");
        self.requests()
            .iter()
            .filter(|r| r.starts_with(&prefix))
            .count()
    }

    fn assert_no_problems(&self) {
        let forge = self.forge();
        assert!(
            forge.problems.is_empty(),
            "requests broke the API's rules:\n{}",
            forge.problems.join("\n")
        );
    }
}

struct Request {
    method: String,
    target: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Request {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn path(&self) -> &str {
        self.target.split('?').next().unwrap_or_default()
    }

    fn query(&self, name: &str) -> Option<&str> {
        let (_, query) = self.target.split_once('?')?;
        query
            .split('&')
            .filter_map(|pair| pair.split_once('='))
            .find(|(key, _)| *key == name)
            .map(|(_, value)| value)
    }
}

struct Response {
    status: u16,
    headers: Vec<(String, String)>,
    body: Value,
}

fn answer(status: u16, body: Value) -> Response {
    Response {
        status,
        headers: Vec::new(),
        body,
    }
}

fn read_request(stream: &mut TcpStream) -> Option<Request> {
    let mut reader = BufReader::new(stream.try_clone().ok()?);
    let mut line = String::new();
    reader.read_line(&mut line).ok()?;
    let mut words = line.split_whitespace();
    let (method, target) = (words.next()?.to_string(), words.next()?.to_string());
    let mut headers = Vec::new();
    loop {
        let mut line = String::new();
        reader.read_line(&mut line).ok()?;
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        let (name, value) = line.split_once(':')?;
        headers.push((name.trim().to_string(), value.trim().to_string()));
    }
    let mut request = Request {
        method,
        target,
        headers,
        body: Vec::new(),
    };
    if request
        .header("expect")
        .is_some_and(|v| v.eq_ignore_ascii_case("100-continue"))
    {
        stream.write_all(b"HTTP/1.1 100 Continue\r\n\r\n").ok()?;
    }
    let length: usize = request
        .header("content-length")
        .map_or(Ok(0), str::parse)
        .ok()?;
    request.body = vec![0; length];
    reader.read_exact(&mut request.body).ok()?;
    Some(request)
}

fn serve(mut stream: TcpStream, base: &str, forge: &Mutex<Forge>) {
    stream.set_read_timeout(Some(Duration::from_secs(10))).ok();
    let Some(request) = read_request(&mut stream) else {
        return;
    };
    let response = {
        let mut forge = forge.lock().expect("forge lock");
        forge
            .requests
            .push(format!("{} {}", request.method, request.target));
        let carriers: Vec<&str> = request
            .headers
            .iter()
            .filter(|(_, value)| value.contains(TOKEN))
            .map(|(name, _)| name.as_str())
            .collect();
        let expected = match forge.api {
            Api::GitHub => "authorization",
            Api::GitLab => "private-token",
        };
        if request.target.contains(TOKEN)
            || String::from_utf8_lossy(&request.body).contains(TOKEN)
            || carriers.len() != 1
            || !carriers[0].eq_ignore_ascii_case(expected)
        {
            let problem = format!(
                "{} {}: the token is somewhere else than in the {expected} header",
                request.method,
                request.path()
            );
            forge.problems.push(problem);
        }
        match forge.api {
            Api::GitHub => github(&request, base, &mut forge),
            Api::GitLab => gitlab(&request, base, &mut forge),
        }
    };
    let body = response.body.to_string();
    let mut head = format!(
        "HTTP/1.1 {} X\r\nContent-Type: application/json; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n",
        response.status,
        body.len()
    );
    for (name, value) in &response.headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    let _ = stream
        .write_all(head.as_bytes())
        .and_then(|()| stream.write_all(body.as_bytes()));
}

/// The page of `items` a list request asks for, and the number of pages.
fn page_of(request: &Request, items: &[Value]) -> (usize, usize, Vec<Value>) {
    let page: usize = request
        .query("page")
        .and_then(|p| p.parse().ok())
        .unwrap_or(1);
    let last = items.len().div_ceil(PAGE).max(1);
    let shown = items.iter().skip((page - 1) * PAGE).take(PAGE).cloned();
    (page, last, shown.collect())
}

/// The body of a create or update request: JSON with one string, `body`, within `limit`.
fn comment_body(request: &Request, limit: usize, problems: &mut Vec<String>) -> Option<String> {
    let what = format!("{} {}", request.method, request.path());
    if !request
        .header("content-type")
        .is_some_and(|v| v.starts_with("application/json"))
    {
        problems.push(format!("{what}: the body is not sent as application/json"));
    }
    let value: Value = match serde_json::from_slice(&request.body) {
        Ok(value) => value,
        Err(error) => {
            problems.push(format!("{what}: the body is not JSON: {error}"));
            return None;
        }
    };
    let Some(object) = value.as_object() else {
        problems.push(format!("{what}: the body is not a JSON object"));
        return None;
    };
    if object.keys().any(|k| k != "body") {
        problems.push(format!("{what}: fields beyond `body`: {value}"));
    }
    let Some(body) = object.get("body").and_then(Value::as_str) else {
        problems.push(format!("{what}: no `body` string"));
        return None;
    };
    if body.is_empty() || body.chars().count() > limit {
        problems.push(format!(
            "{what}: a body of {} characters (1 to {limit})",
            body.chars().count()
        ));
        return None;
    }
    Some(body.to_string())
}

/// GitHub's REST API, issue comments: list (paginated), create, update.
fn github(request: &Request, base: &str, forge: &mut Forge) -> Response {
    let what = format!("{} {}", request.method, request.path());
    for (name, wanted) in [
        ("accept", "application/vnd.github+json"),
        ("x-github-api-version", "2022-11-28"),
    ] {
        if request.header(name) != Some(wanted) {
            forge.problems.push(format!(
                "{what}: header {name} is {:?}, GitHub documents {wanted:?}",
                request.header(name)
            ));
        }
    }
    if request.header("user-agent").is_none_or(str::is_empty) {
        forge
            .problems
            .push(format!("{what}: no User-Agent (GitHub refuses those)"));
    }
    if request.header("authorization") != Some(&format!("Bearer {TOKEN}")) {
        forge
            .problems
            .push(format!("{what}: not `Authorization: Bearer` the token"));
        return answer(401, json!({"message": "Bad credentials"}));
    }
    let list_paths = [
        format!("/repos/{REPO}/issues/{NUMBER}/comments"),
        format!("/repositories/{REPO_ID}/issues/{NUMBER}/comments"),
    ];
    let one = format!("/repos/{REPO}/issues/comments/");
    let render = |c: &Comment| {
        json!({
            "id": c.id,
            "node_id": format!("IC_{}", c.id),
            "url": format!("{base}/repos/{REPO}/issues/comments/{}", c.id),
            "body": c.body,
            "user": {"login": c.author, "type": if c.author == BOT { "Bot" } else { "User" }},
            "author_association": "NONE",
        })
    };
    let refused = json!({
        "message": "Resource not accessible by integration",
        "documentation_url": "https://docs.github.com/rest/issues/comments",
        "status": "403",
    });
    match request.method.as_str() {
        "GET" if list_paths.iter().any(|p| p == request.path()) => {
            if request.query("per_page").is_none() {
                forge.problems.push(format!(
                    "{what}: lists without per_page (30 a page, more requests)"
                ));
            }
            let items: Vec<Value> = forge.comments.iter().map(render).collect();
            let (page, last, shown) = page_of(request, &items);
            let link = |page: usize, rel: &str| {
                format!(
                    "<{base}/repositories/{REPO_ID}/issues/{NUMBER}/comments?per_page=100&page={page}>; rel=\"{rel}\""
                )
            };
            let mut links = Vec::new();
            if page > 1 {
                links.push(link(page - 1, "prev"));
            }
            if page < last {
                links.push(link(page + 1, "next"));
                links.push(link(last, "last"));
            }
            if page > 1 {
                links.push(link(1, "first"));
            }
            let mut response = answer(200, Value::Array(shown));
            if !links.is_empty() {
                response
                    .headers
                    .push(("Link".to_string(), links.join(", ")));
            }
            response
        }
        "POST" if request.path() == list_paths[0] => {
            if forge.read_only {
                return answer(403, refused);
            }
            let Some(body) = comment_body(request, 65_536, &mut forge.problems) else {
                return answer(422, json!({"message": "Validation Failed"}));
            };
            forge.next_id += 1;
            let comment = Comment {
                id: forge.next_id,
                author: BOT.to_string(),
                body,
                system: false,
            };
            let rendered = render(&comment);
            forge.comments.push(comment);
            answer(201, rendered)
        }
        "PATCH" if request.path().starts_with(&one) => {
            if forge.read_only {
                return answer(403, refused);
            }
            let id: Option<u64> = request.path()[one.len()..].parse().ok();
            let Some(index) = forge.comments.iter().position(|c| Some(c.id) == id) else {
                forge.problems.push(format!("{what}: no such comment"));
                return answer(404, json!({"message": "Not Found"}));
            };
            if forge.comments[index].author != BOT {
                forge.problems.push(format!(
                    "{what}: edits {}'s comment",
                    forge.comments[index].author
                ));
            }
            let Some(body) = comment_body(request, 65_536, &mut forge.problems) else {
                return answer(422, json!({"message": "Validation Failed"}));
            };
            forge.comments[index].body = body;
            answer(200, render(&forge.comments[index]))
        }
        _ => {
            forge
                .problems
                .push(format!("{what}: not a request the script should make"));
            answer(404, json!({"message": "Not Found"}))
        }
    }
}

/// GitLab's REST API, merge-request notes: list (paginated), create, update.
fn gitlab(request: &Request, base: &str, forge: &mut Forge) -> Response {
    let what = format!("{} {}", request.method, request.path());
    if request.header("private-token") != Some(TOKEN) {
        forge
            .problems
            .push(format!("{what}: not `PRIVATE-TOKEN:` the token"));
        return answer(401, json!({"message": "401 Unauthorized"}));
    }
    if request.header("authorization").is_some() {
        forge.problems.push(format!(
            "{what}: an Authorization header beside PRIVATE-TOKEN"
        ));
    }
    let notes = format!("/api/v4/projects/{GITLAB_PROJECT}/merge_requests/{NUMBER}/notes");
    let one = format!("{notes}/");
    let render = |c: &Comment| {
        json!({
            "id": c.id,
            "body": c.body,
            "author": {"username": c.author},
            "system": c.system,
            "noteable_type": "MergeRequest",
            "noteable_iid": NUMBER,
        })
    };
    let refused = json!({"message": "403 Forbidden"});
    match request.method.as_str() {
        "GET" if request.path() == notes => {
            if request.query("sort") != Some("asc") || request.query("order_by").is_none() {
                forge.problems.push(format!(
                    "{what}: lists newest first (GitLab's default) instead of sort=asc"
                ));
            }
            let items: Vec<Value> = forge.comments.iter().map(render).collect();
            let (page, last, shown) = page_of(request, &items);
            let link = |page: usize, rel: &str| {
                format!(
                    "<{base}/projects/{GITLAB_PROJECT}/merge_requests/{NUMBER}/notes?id={GITLAB_PROJECT}&noteable_id={NUMBER}&order_by=created_at&page={page}&per_page={PAGE}&sort=asc>; rel=\"{rel}\""
                )
            };
            let mut links = Vec::new();
            if page > 1 {
                links.push(link(page - 1, "prev"));
            }
            if page < last {
                links.push(link(page + 1, "next"));
            }
            links.push(link(1, "first"));
            links.push(link(last, "last"));
            let mut response = answer(200, Value::Array(shown));
            response.headers = vec![
                ("Link".to_string(), links.join(", ")),
                ("X-Page".to_string(), page.to_string()),
                ("X-Per-Page".to_string(), PAGE.to_string()),
                ("X-Total".to_string(), items.len().to_string()),
                ("X-Total-Pages".to_string(), last.to_string()),
                (
                    "X-Next-Page".to_string(),
                    if page < last {
                        (page + 1).to_string()
                    } else {
                        String::new()
                    },
                ),
            ];
            response
        }
        "POST" if request.path() == notes => {
            if forge.read_only {
                return answer(403, refused);
            }
            let Some(body) = comment_body(request, 1_000_000, &mut forge.problems) else {
                return answer(400, json!({"message": "body is missing"}));
            };
            forge.next_id += 1;
            let note = Comment {
                id: forge.next_id,
                author: "project_42_bot".to_string(),
                body,
                system: false,
            };
            let rendered = render(&note);
            forge.comments.push(note);
            answer(201, rendered)
        }
        "PUT" if request.path().starts_with(&one) => {
            if forge.read_only {
                return answer(403, refused);
            }
            let id: Option<u64> = request.path()[one.len()..].parse().ok();
            let Some(index) = forge.comments.iter().position(|c| Some(c.id) == id) else {
                forge.problems.push(format!("{what}: no such note"));
                return answer(404, json!({"message": "404 Not found"}));
            };
            if forge.comments[index].author != "project_42_bot" {
                forge.problems.push(format!(
                    "{what}: edits {}'s note",
                    forge.comments[index].author
                ));
            }
            let Some(body) = comment_body(request, 1_000_000, &mut forge.problems) else {
                return answer(400, json!({"message": "body is missing"}));
            };
            forge.comments[index].body = body;
            answer(200, render(&forge.comments[index]))
        }
        _ => {
            forge
                .problems
                .push(format!("{what}: not a request the script should make"));
            answer(404, json!({"message": "404 Not found"}))
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The scratch repository the script runs in.

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("create folder");
    for entry in std::fs::read_dir(from).expect("read folder") {
        let entry = entry.expect("entry");
        let target = to.join(entry.file_name());
        if entry.file_type().expect("file type").is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).expect("copy");
        }
    }
}

/// Replace the one `from` in a file by `to`.
fn edit(path: &Path, from: &str, to: &str) {
    let text = std::fs::read_to_string(path).expect("read");
    assert_eq!(
        text.matches(from).count(),
        1,
        "{from:?} in {}",
        path.display()
    );
    std::fs::write(path, text.replacen(from, to, 1)).expect("write");
}

/// A repository as CI checks it out: the plans, the AKS state (`state/aks`) and the same state
/// with an Ingress so heavily annotated that its preview takes several comments (`state/big`).
/// Every program the script starts goes through a shim in `bin/` that logs its argv.
struct Workspace {
    dir: PathBuf,
}

/// The programs the script starts; each is shimmed to log its arguments.
const PROGRAMS: &[&str] = &[
    "curl", "jq", "cat", "grep", "sed", "tr", "head", "find", "wc", "rm", "mkdir", "mv", "mktemp",
    "git",
];

impl Workspace {
    fn new(name: &str) -> Workspace {
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
            .join(format!("review-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("tmp")).expect("scratch folder");
        copy_dir(&root().join("plans"), &dir.join("plans"));
        copy_dir(&root().join("tests/state/aks"), &dir.join("state/aks"));
        copy_dir(&root().join("tests/state/aks"), &dir.join("state/big"));
        let annotations: String = (0..1000)
            .map(|i| {
                format!(
                    "      review.example.com/note-{i:04}: \"{}\"\n",
                    "x".repeat(40)
                )
            })
            .collect();
        edit(
            &dir.join("state/big/old/vault.yaml"),
            "    annotations:\n  spec:\n    ingressClassName",
            &format!("    annotations:\n{annotations}  spec:\n    ingressClassName"),
        );
        std::fs::write(
            dir.join("event.json"),
            json!({"action": "synchronize", "number": NUMBER, "pull_request": {
                "number": NUMBER,
                "head": {"repo": {"full_name": REPO}},
                "base": {"repo": {"full_name": REPO}},
            }})
            .to_string(),
        )
        .expect("event");
        let bin = dir.join("bin");
        std::fs::create_dir_all(&bin).expect("bin");
        let path = std::env::var("PATH").unwrap_or_default();
        let mut shims = vec![(
            "planc".to_string(),
            PathBuf::from(env!("CARGO_BIN_EXE_planc")),
        )];
        for program in PROGRAMS {
            if let Some(real) = std::env::split_paths(&path)
                .map(|d| d.join(program))
                .find(|p| p.is_file())
            {
                shims.push((program.to_string(), real));
            }
        }
        for (name, real) in shims {
            let shim = bin.join(&name);
            std::fs::write(
                &shim,
                format!(
                    "#!/bin/sh\nprintf '%s' '{name}' >> '{log}'\nfor a in \"$@\"; do printf ' %s' \"$a\" >> '{log}'; done\necho >> '{log}'\nexec '{real}' \"$@\"\n",
                    log = dir.join("argv.log").display(),
                    real = real.display()
                ),
            )
            .expect("shim");
            let mut permissions = std::fs::metadata(&shim).expect("shim").permissions();
            std::os::unix::fs::PermissionsExt::set_mode(&mut permissions, 0o755);
            std::fs::set_permissions(&shim, permissions).expect("chmod");
        }
        Workspace { dir }
    }

    fn path(&self, relative: &str) -> PathBuf {
        self.dir.join(relative)
    }

    fn read(&self, relative: &str) -> String {
        std::fs::read_to_string(self.path(relative)).unwrap_or_else(|e| panic!("{relative}: {e}"))
    }

    /// The comment files the script wrote for a plan, in order.
    fn parts(&self, plan: &str) -> Vec<String> {
        let folder = format!(
            "plan-review/{}",
            plan.trim_end_matches(".yaml").replace('/', "__")
        );
        (1..)
            .map(|n| self.path(&format!("{folder}/comment-{n}.md")))
            .take_while(|p| p.is_file())
            .map(|p| std::fs::read_to_string(p).expect("comment"))
            .collect()
    }

    /// Run the script with the scratch repository as working folder and only the environment
    /// CI would give it.
    fn run(&self, args: &[&str], env: &[(&str, String)]) -> Output {
        let path = format!(
            "{}:{}",
            self.path("bin").display(),
            std::env::var("PATH").unwrap_or_default()
        );
        let out = Command::new("bash")
            .arg(root().join(".github/scripts/plan-review.sh"))
            .args(args)
            .current_dir(&self.dir)
            .env_clear()
            .env("PATH", path)
            .env("HOME", &self.dir)
            .env("TMPDIR", self.path("tmp"))
            .env("PLANC", self.path("bin/planc"))
            .envs(env.iter().map(|(k, v)| (k, v)))
            .output()
            .expect("bash runs the script");
        let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
        assert!(
            !stdout.contains(TOKEN) && !stderr.contains(TOKEN),
            "the token was printed:\n{stdout}\n{stderr}"
        );
        let argv = std::fs::read_to_string(self.path("argv.log")).unwrap_or_default();
        assert!(!argv.contains(TOKEN), "the token was in an argv:\n{argv}");
        let left: Vec<_> = std::fs::read_dir(self.path("tmp")).expect("tmp").collect();
        assert!(left.is_empty(), "the script left its scratch files");
        out
    }

    fn github(&self, server: &Server) -> Env {
        vec![
            ("GITHUB_API_URL", server.base.clone()),
            ("GITHUB_REPOSITORY", REPO.to_string()),
            (
                "GITHUB_EVENT_PATH",
                self.path("event.json").display().to_string(),
            ),
            ("GITHUB_TOKEN", TOKEN.to_string()),
        ]
    }

    fn gitlab(&self, server: &Server) -> Env {
        vec![
            ("CI_API_V4_URL", server.base.clone()),
            ("CI_PROJECT_ID", GITLAB_PROJECT.to_string()),
            ("CI_MERGE_REQUEST_IID", NUMBER.to_string()),
            ("CI_MERGE_REQUEST_PROJECT_ID", GITLAB_PROJECT.to_string()),
            (
                "CI_MERGE_REQUEST_SOURCE_PROJECT_ID",
                GITLAB_PROJECT.to_string(),
            ),
            ("PLANC_GITLAB_TOKEN", TOKEN.to_string()),
        ]
    }
}

impl Drop for Workspace {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// Give the AKS plan a parameter nobody reads: a warning (W012), so an annotation, and the plan
/// still goes ahead. Returns the line of the warning.
fn add_unused_parameter(ws: &Workspace) -> usize {
    edit(
        &ws.path(AKS),
        "\nparams:\n",
        "\nparams:\n  review_note:\n    type: string\n    default: x\n",
    );
    1 + ws
        .read(AKS)
        .lines()
        .position(|l| l == "  review_note:")
        .expect("the parameter")
}

fn marker(plan: &str, part: usize) -> String {
    format!("<!-- planc-preview plan={plan} part={part} -->")
}

fn succeeded(out: &Output) -> String {
    assert_eq!(
        out.status.code(),
        Some(0),
        "stdout:\n{}\nstderr:\n{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    text(&out.stdout)
}

/// The comments other people and tools wrote, which the script must leave alone; the last one
/// carries a planc marker, but not at its start.
fn others() -> Vec<Comment> {
    vec![
        Comment::by("octocat", "Looks good; waiting for the preview."),
        Comment::by(
            "other-bot",
            "<!-- planc-preview plan=plans/vault-restore.yaml part=1 -->\nanother plan's preview",
        ),
        Comment::by(
            "hubot",
            &format!("I copied this from the preview: {}", marker(AKS, 2)),
        ),
    ]
}

fn bot_comments(server: &Server) -> Vec<Comment> {
    server
        .comments()
        .into_iter()
        .filter(|c| c.author == BOT)
        .collect()
}

// ---------------------------------------------------------------------------------------------
// GitHub.

#[test]
fn github_comments_are_created_then_updated_in_place_then_superseded() {
    let ws = Workspace::new("github");
    let line = add_unused_parameter(&ws);
    let server = Server::start(Api::GitHub, others(), false);
    let env = ws.github(&server);
    let review = |state: &str| ws.run(&["--forge", "github", "--state", state, AKS], &env);

    // (a) The first run: the annotation, the saved plan, one new comment per part.
    let stdout = succeeded(&review("state/big"));
    assert!(
        stdout.contains(&format!(
            "::warning file={AKS},line={line},col=3,title=planc W012::parameter `review_note` is never used"
        )),
        "{stdout}"
    );
    let saved: Value =
        serde_json::from_str(&ws.read("plan-review/plans__vault-aks-migration/saved-plan.json"))
            .expect("the saved plan is JSON");
    assert_eq!(saved["format"], "planc.saved-plan/v1");
    let first = ws.parts(AKS);
    assert!(
        first.len() >= 3,
        "the big state's preview takes several comments, not {}",
        first.len()
    );
    assert!(first.iter().all(|part| part.len() < 65_536));
    assert_eq!(server.count("POST"), first.len());
    assert_eq!(server.count("PATCH"), 0);
    assert!(
        server
            .requests()
            .iter()
            .any(|r| r.starts_with(&format!("GET /repositories/{REPO_ID}/"))),
        "the script did not follow the Link header: {:?}",
        server.requests()
    );
    let created = bot_comments(&server);
    assert_eq!(created.len(), first.len());
    for (index, (comment, part)) in created.iter().zip(&first).enumerate() {
        assert_eq!(comment.body, format!("{}\n{part}", marker(AKS, index + 1)));
    }
    assert!(stdout.contains(&format!(
        "{AKS}: {} comment(s) on GitHub #{NUMBER}: {} created, 0 updated, 0 unchanged",
        first.len(),
        first.len()
    )));
    server.assert_no_problems();

    // (b) The plan changed: the comments are edited in place, on pages beyond the first.
    edit(
        &ws.path("plans/vault-aks-migration.params.yaml"),
        "new_key_vault_name: kv-vault-new\n",
        "new_key_vault_name: kv-vault-next\n",
    );
    server.clear_requests();
    succeeded(&review("state/big"));
    let second = ws.parts(AKS);
    assert_eq!(second.len(), first.len());
    let changed: Vec<usize> = (0..first.len())
        .filter(|&i| first[i] != second[i])
        .collect();
    assert!(
        !changed.is_empty(),
        "the new key's name shows in the preview"
    );
    assert_eq!(server.count("POST"), 0, "{:?}", server.requests());
    let patched: Vec<String> = changed
        .iter()
        .map(|&i| format!("PATCH /repos/{REPO}/issues/comments/{}", created[i].id))
        .collect();
    let patches: Vec<String> = server
        .requests()
        .into_iter()
        .filter(|r| r.starts_with("PATCH"))
        .collect();
    assert_eq!(patches, patched, "only the parts that changed are edited");
    let updated = bot_comments(&server);
    assert_eq!(
        updated.iter().map(|c| c.id).collect::<Vec<_>>(),
        created.iter().map(|c| c.id).collect::<Vec<_>>()
    );
    for (index, (comment, part)) in updated.iter().zip(&second).enumerate() {
        assert_eq!(comment.body, format!("{}\n{part}", marker(AKS, index + 1)));
    }

    // (c) A shorter preview: part 1 is edited, the leftover parts say they are superseded.
    server.clear_requests();
    let stdout = succeeded(&review("state/aks"));
    let third = ws.parts(AKS);
    assert_eq!(third.len(), 1);
    assert_eq!(server.count("POST"), 0);
    assert_eq!(server.count("PATCH"), first.len());
    let now = bot_comments(&server);
    assert_eq!(now[0].body, format!("{}\n{}", marker(AKS, 1), third[0]));
    for (index, comment) in now.iter().enumerate().skip(1) {
        assert_eq!(
            comment.body,
            format!(
                "{}\n_Superseded: the planc preview of `{AKS}` now has 1 part(s), above; this one is left over from a longer preview._\n",
                marker(AKS, index + 1)
            )
        );
    }
    assert!(
        stdout.contains(&format!(
            "{} leftover(s) marked superseded",
            first.len() - 1
        )),
        "{stdout}"
    );

    // The same preview again: nothing to write.
    server.clear_requests();
    let stdout = succeeded(&review("state/aks"));
    assert_eq!(server.count("POST") + server.count("PATCH"), 0);
    assert!(stdout.contains("0 created, 0 updated, 1 unchanged; 0 leftover(s)"));

    // The comments of others, and the one quoting a marker, are as they were.
    let mut expected = others();
    for (index, comment) in expected.iter_mut().enumerate() {
        comment.id = 1000 + index as u64;
    }
    let kept: Vec<(u64, String)> = server
        .comments()
        .into_iter()
        .filter(|c| c.author != BOT)
        .map(|c| (c.id, c.body))
        .collect();
    assert_eq!(
        kept,
        expected
            .into_iter()
            .map(|c| (c.id, c.body))
            .collect::<Vec<_>>()
    );
    server.assert_no_problems();

    // (e) The token went in a config on curl's standard input, never on a command line.
    let argv = ws.read("argv.log");
    let curls: Vec<&str> = argv.lines().filter(|l| l.starts_with("curl ")).collect();
    assert!(!curls.is_empty());
    assert!(
        curls.iter().all(|l| l.contains(" --config - ")),
        "{curls:?}"
    );
    assert!(!argv.contains("Authorization"), "{argv}");
}

#[test]
fn a_refused_comment_fails_and_says_which_permission_the_job_needs() {
    let ws = Workspace::new("refused");
    let server = Server::start(Api::GitHub, others(), true);
    let out = ws.run(
        &["--forge", "github", "--state", "state/aks", AKS],
        &ws.github(&server),
    );
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "error: GitHub refused POST /repos/{REPO}/issues/{NUMBER}/comments: 403 Resource not accessible by integration; the workflow's token may not write pull-request comments: give the job 'permissions: pull-requests: write'"
        )),
        "{stderr}"
    );
    // The files for the artifact are written before anything is posted.
    assert!(
        ws.path("plan-review/plans__vault-aks-migration/saved-plan.json")
            .is_file()
    );
    assert_eq!(ws.parts(AKS).len(), 1);
    server.assert_no_problems();
}

#[test]
fn a_plan_with_errors_fails_the_job_after_its_annotations_and_says_so_in_its_comment() {
    let ws = Workspace::new("errors");
    std::fs::copy(
        root().join("tests/cases/check/dozen-mistakes.yaml"),
        ws.path("plans/broken.yaml"),
    )
    .expect("copy");
    let server = Server::start(Api::GitHub, Vec::new(), false);
    let broken = "plans/broken.yaml";
    let out = ws.run(
        &["--forge", "github", "--state", "state/aks", broken, AKS],
        &ws.github(&server),
    );
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert_eq!(out.status.code(), Some(1), "{stdout}\n{stderr}");
    assert!(
        stdout.contains(
            "::error file=plans/broken.yaml,line=29,col=11,title=planc E006::unknown action `vault.leadr`"
        ),
        "{stdout}"
    );
    assert_eq!(stdout.matches("::error file=plans/broken.yaml").count(), 12);
    assert!(
        stderr.contains("error: 1 plan(s) cannot go ahead: plans/broken.yaml"),
        "{stderr}"
    );
    assert!(
        !ws.path("plan-review/plans__broken/saved-plan.json")
            .exists()
    );
    // The broken plan's comment says what is wrong; the other plan is previewed as usual.
    let comments = bot_comments(&server);
    assert_eq!(comments.len(), 2);
    let notice = &comments[0].body;
    assert!(
        notice.starts_with(&format!(
            "{}\n### planc: `plans/broken.yaml` has errors\n",
            marker(broken, 1)
        )),
        "{notice}"
    );
    assert!(notice.contains("error[E006]: unknown action `vault.leadr`"));
    assert!(notice.contains("12 errors and 2 warnings"));
    assert_eq!(
        comments[1].body,
        format!("{}\n{}", marker(AKS, 1), ws.parts(AKS)[0])
    );
    server.assert_no_problems();
}

#[test]
fn a_pull_request_from_a_fork_is_reviewed_without_posting() {
    let ws = Workspace::new("fork");
    std::fs::write(
        ws.path("event.json"),
        json!({"pull_request": {
            "number": NUMBER,
            "head": {"repo": {"full_name": "someone/vault-moves"}},
            "base": {"repo": {"full_name": REPO}},
        }})
        .to_string(),
    )
    .expect("event");
    let server = Server::start(Api::GitHub, Vec::new(), false);
    let stdout = succeeded(&ws.run(
        &["--forge", "github", "--state", "state/aks", AKS],
        &ws.github(&server),
    ));
    assert!(
        stdout.contains("comes from a fork (someone/vault-moves)"),
        "{stdout}"
    );
    assert!(server.requests().is_empty());
    assert_eq!(ws.parts(AKS).len(), 1);
}

// ---------------------------------------------------------------------------------------------
// GitLab.

#[test]
fn gitlab_notes_are_created_then_updated_and_diagnostics_go_to_code_quality() {
    let ws = Workspace::new("gitlab");
    let line = add_unused_parameter(&ws);
    let mut seed = others();
    seed.push(Comment {
        system: true,
        ..Comment::by("alice", "added 1 commit")
    });
    let server = Server::start(Api::GitLab, seed, false);
    let env = ws.gitlab(&server);
    let review = || ws.run(&["--forge", "gitlab", "--state", "state/aks", AKS], &env);

    let stdout = succeeded(&review());
    assert!(stdout.contains("warning[W012]: parameter `review_note` is never used"));
    assert_eq!(server.count("POST"), 1);
    let note = server.comments().last().cloned().expect("a note");
    assert_eq!(note.author, "project_42_bot");
    assert_eq!(
        note.body,
        format!("{}\n{}", marker(AKS, 1), ws.parts(AKS)[0])
    );
    let report: Value =
        serde_json::from_str(&ws.read("plan-review/gl-code-quality-report.json")).expect("JSON");
    assert_eq!(
        report,
        json!([{
            "description": "W012 unused parameter: parameter `review_note` is never used (help: remove it, or read it with `{{ params.NAME }}`)",
            "check_name": "W012",
            "fingerprint": format!("W012:{AKS}:{line}:3:parameter `review_note` is never used"),
            "severity": "minor",
            "location": {"path": AKS, "lines": {"begin": line}},
        }])
    );

    edit(
        &ws.path("plans/vault-aks-migration.params.yaml"),
        "new_key_vault_name: kv-vault-new\n",
        "new_key_vault_name: kv-vault-next\n",
    );
    server.clear_requests();
    succeeded(&review());
    assert_eq!(server.count("POST"), 0, "{:?}", server.requests());
    assert_eq!(
        server.requests().last().map(String::as_str),
        Some(
            format!(
                "PUT /api/v4/projects/{GITLAB_PROJECT}/merge_requests/{NUMBER}/notes/{}",
                note.id
            )
            .as_str()
        )
    );
    assert!(
        server.requests().iter().any(|r| r.contains("page=2")),
        "the script did not follow the Link header: {:?}",
        server.requests()
    );
    let updated = server.comments().last().cloned().expect("a note");
    assert_eq!(updated.id, note.id);
    assert_ne!(updated.body, note.body);
    assert_eq!(
        updated.body,
        format!("{}\n{}", marker(AKS, 1), ws.parts(AKS)[0])
    );
    server.assert_no_problems();
}

// ---------------------------------------------------------------------------------------------
// Which plans, and how it is used.

#[test]
fn changed_since_reviews_the_plans_a_change_touches() {
    let ws = Workspace::new("changed");
    // The AKS plans only, all previewed against one state.
    for entry in std::fs::read_dir(ws.path("plans")).expect("plans") {
        let path = entry.expect("entry").path();
        let name = path
            .file_name()
            .expect("name")
            .to_string_lossy()
            .into_owned();
        if name.ends_with(".yaml") && !name.starts_with("vault-aks-migration") {
            std::fs::remove_file(&path).expect("remove");
        }
    }
    std::fs::write(
        ws.path("review.states"),
        "# plans and their states\nplans/vault-aks-migration*.yaml   state/aks  # all three\n",
    )
    .expect("states");
    let git = |args: &[&str]| {
        let out = Command::new("git")
            .args(args)
            .current_dir(&ws.dir)
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("HOME", &ws.dir)
            .env("GIT_AUTHOR_NAME", "t")
            .env("GIT_AUTHOR_EMAIL", "t@example.invalid")
            .env("GIT_COMMITTER_NAME", "t")
            .env("GIT_COMMITTER_EMAIL", "t@example.invalid")
            .output()
            .expect("git runs");
        assert!(out.status.success(), "git {args:?}: {}", text(&out.stderr));
    };
    git(&["init", "-q"]);
    git(&["add", "-A"]);
    git(&["commit", "-q", "-m", "base"]);
    let review = |since: &str| -> Vec<String> {
        let stdout = succeeded(&ws.run(
            &[
                "--forge",
                "none",
                "--states",
                "review.states",
                "--changed-since",
                since,
            ],
            &[],
        ));
        if stdout.contains("nothing to review") {
            return Vec::new();
        }
        stdout
            .lines()
            .filter_map(|l| l.strip_prefix("== planc check "))
            .map(str::to_string)
            .collect()
    };
    let change = |file: &str| -> Vec<String> {
        let path = ws.path(file);
        let mut text = std::fs::read_to_string(&path).unwrap_or_default();
        text.push_str("# changed\n");
        std::fs::write(&path, text).expect("write");
        git(&["add", "-A"]);
        git(&["commit", "-q", "-m", file]);
        review("HEAD^1")
    };
    let every = [
        "plans/vault-aks-migration-live.yaml",
        "plans/vault-aks-migration-online.yaml",
        AKS,
    ];
    assert_eq!(change("plans/vault-aks-migration.params.yaml"), [AKS]);
    assert_eq!(change("plans/vault-aks-migration-online.yaml"), [every[1]]);
    assert_eq!(change("plans/modules/proxy.yaml"), every, "a module");
    assert_eq!(change("state/aks/old/vault.yaml"), every, "their state");
    assert_eq!(change("review.states"), every, "the map of states");
    assert_eq!(change("README.md"), Vec::<String>::new());
    assert_eq!(review("HEAD~6"), every);
}

#[test]
fn help_teaches_and_wrong_usage_exits_two_with_what_to_do() {
    let ws = Workspace::new("usage");
    let help = succeeded(&ws.run(&["--help"], &[]));
    for taught in [
        "--changed-since REF",
        "--states FILE",
        "<!-- planc-preview plan=PLAN part=N -->",
        "superseded",
        "permissions: pull-requests: write",
        "PLANC_GITLAB_TOKEN",
        "curl --config -",
    ] {
        assert!(help.contains(taught), "--help lacks {taught:?}");
    }
    let event = ws.path("event.json").display().to_string();
    let github_without_token: Env = vec![
        ("GITHUB_REPOSITORY", REPO.to_string()),
        ("GITHUB_EVENT_PATH", event),
    ];
    let cases = [
        (
            vec!["--forge", "none", AKS],
            Env::new(),
            "--state DIR or --states FILE",
        ),
        (
            vec!["--forge", "none", "--state", "state/aks"],
            Env::new(),
            "which plans?",
        ),
        (
            vec!["--forge", "none", "--state", "state/aks", "plans/nope.yaml"],
            Env::new(),
            "no plan file plans/nope.yaml",
        ),
        (
            vec!["--forge", "bitbucket", "--state", "state/aks", AKS],
            Env::new(),
            "--forge takes github, gitlab or none",
        ),
        (
            vec!["--forge", "github", "--state", "state/aks", AKS],
            github_without_token,
            "GITHUB_TOKEN is not set",
        ),
        (
            vec!["--forge", "gitlab", "--state", "state/aks", AKS],
            Env::new(),
            "CI_API_V4_URL is not set",
        ),
    ];
    for (args, env, said) in cases {
        let out = ws.run(&args, &env);
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains(said), "{args:?}: {stderr}");
    }
}
