//! The twin's Azure emulator as a client sees it, through its proxy with the real `curl`: every
//! host but Azure's refused (the managed-identity endpoint included), tokens for a client
//! secret and refusals of a wrong or expired one, the Key Vault challenge, real RSA-OAEP-256
//! wrap and unwrap, old key versions usable after a rotation, a disabled key refused, and the
//! request log.

use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::Value;
use twin::azure::AzureCloud;
use twin::azure::state::{ClientSecret, ROLE_CRYPTO_SERVICE_ENCRYPTION_USER, Tenant};
use twin::identity::TokenSigner;
use twin::tls::Authority;

struct Emulator {
    cloud: Arc<AzureCloud>,
    proxy: SocketAddr,
    ca: std::path::PathBuf,
    tenant_id: String,
    client_id: String,
    secret: String,
    _dir: tempfile::TempDir,
}

fn start(runtime: &tokio::runtime::Handle) -> Emulator {
    let dir = tempfile::tempdir().unwrap();
    let mut tenant = Tenant::new(2);
    tenant
        .add_vault("kv-test", "rg-test", true, "unseal")
        .unwrap();
    let client_id = tenant.add_application("seal");
    let secret = "tw~emulator-test-secret-0123456789".to_string();
    let application = tenant.application_mut(&client_id).unwrap();
    application.secrets.push(ClientSecret {
        value: secret.clone(),
        expires_at: None,
    });
    let object_id = application.object_id.clone();
    let vault = tenant.vault("kv-test").unwrap().clone();
    let scope = tenant.vault_id(&vault);
    tenant.assign(&object_id, ROLE_CRYPTO_SERVICE_ENCRYPTION_USER, &scope);
    let tenant_id = tenant.tenant_id.clone();
    let signer = Arc::new(TokenSigner::for_dir(dir.path()).unwrap());
    let cloud = Arc::new(AzureCloud::new(tenant, signer, &dir.path().join("azure")).unwrap());
    let authority = Arc::new(Authority::generate("emulator test CA").unwrap());
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, authority.ca_pem()).unwrap();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let proxy = listener.local_addr().unwrap();
    twin::azure::spawn_proxy(runtime, listener, cloud.clone(), authority).unwrap();
    Emulator {
        cloud,
        proxy,
        ca,
        tenant_id,
        client_id,
        secret,
        _dir: dir,
    }
}

/// `curl` through the proxy, trusting the twin's CA: (HTTP status, body, response headers).
fn curl(emulator: &Emulator, args: &[&str]) -> (u16, String, String) {
    let headers = emulator
        .ca
        .with_file_name(format!("headers-{}", uuid_like()));
    let out = Command::new("curl")
        .args(["-sS", "--proxy", &format!("http://{}", emulator.proxy)])
        .args(["--cacert", emulator.ca.to_str().unwrap()])
        .args(["-D", headers.to_str().unwrap(), "-w", "\n%{http_code}"])
        .args(args)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", "0"));
    let headers = std::fs::read_to_string(&headers).unwrap_or_default();
    (code.trim().parse().unwrap_or(0), body.to_string(), headers)
}

fn uuid_like() -> String {
    format!(
        "{:x}",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    )
}

fn token(emulator: &Emulator, secret: &str) -> (u16, Value) {
    let form = format!(
        "grant_type=client_credentials&client_id={}&client_secret={}&scope=https%3A%2F%2Fvault.azure.net%2F.default",
        emulator.client_id, secret
    );
    let (code, body, _) = curl(
        emulator,
        &[
            "-d",
            &form,
            &format!(
                "https://login.microsoftonline.com/{}/oauth2/v2.0/token",
                emulator.tenant_id
            ),
        ],
    );
    (code, serde_json::from_str(&body).unwrap_or(Value::Null))
}

fn key_call(emulator: &Emulator, token: &str, path: &str, body: Option<&Value>) -> (u16, Value) {
    let url = format!("https://kv-test.vault.azure.net{path}?api-version=7.4");
    let authorization = format!("Authorization: Bearer {token}");
    let mut args = vec!["-H", &authorization, "-H", "Content-Type: application/json"];
    let text = body.map(Value::to_string);
    if let Some(text) = &text {
        args.extend(["-d", text.as_str()]);
    }
    args.push(&url);
    let (code, body, _) = curl(emulator, &args);
    (code, serde_json::from_str(&body).unwrap_or(Value::Null))
}

fn wrap(emulator: &Emulator, token: &str, plain: &[u8]) -> (String, String) {
    let (code, answer) = key_call(
        emulator,
        token,
        "/keys/unseal/wrapkey",
        Some(&serde_json::json!({"alg": "RSA-OAEP-256", "value": URL_SAFE_NO_PAD.encode(plain)})),
    );
    assert_eq!(code, 200, "{answer}");
    let version = answer["kid"]
        .as_str()
        .unwrap()
        .rsplit('/')
        .next()
        .unwrap()
        .to_string();
    (version, answer["value"].as_str().unwrap().to_string())
}

#[tokio::test(flavor = "multi_thread")]
async fn the_emulator_serves_azure_through_its_proxy_and_nothing_else() {
    let emulator = start(&tokio::runtime::Handle::current());
    let emulator = tokio::task::spawn_blocking(move || {
        check_proxy_refusals(&emulator);
        check_tokens_and_keys(&emulator);
        emulator
    })
    .await
    .unwrap();
    let log = emulator.cloud.requests();
    let refused: Vec<&str> = log.iter().filter_map(|e| e["refused"].as_str()).collect();
    assert!(refused.contains(&"example.com:443"), "{refused:?}");
    assert!(
        refused.iter().any(|r| r.contains("169.254.169.254")),
        "{refused:?}"
    );
    assert!(
        log.iter()
            .all(|e| !e.to_string().contains(&emulator.secret)),
        "the log holds no client secret"
    );
    assert!(Path::new(emulator.cloud.log_path()).is_file());
}

fn check_proxy_refusals(emulator: &Emulator) {
    // Another host: the CONNECT is refused, nothing is opened.
    let (code, _, headers) = curl(emulator, &["https://example.com/"]);
    assert_eq!(code, 0, "curl gets no answer from example.com");
    assert!(headers.contains("403"), "{headers}");
    // The managed-identity endpoint, as a plain proxied request.
    let (code, body, _) = curl(
        emulator,
        &[
            "-H",
            "Metadata: true",
            "http://169.254.169.254/metadata/identity/oauth2/token",
        ],
    );
    assert_eq!(code, 403, "{body}");
    assert!(body.contains("nothing leaves this machine"), "{body}");
    // A key vault that does not exist does not resolve, as in Azure.
    let (code, _, headers) = curl(emulator, &["https://kv-nowhere.vault.azure.net/keys/x"]);
    assert_eq!(code, 0);
    assert!(headers.contains("403"), "{headers}");
}

fn check_tokens_and_keys(emulator: &Emulator) {
    // The challenge a Key Vault client starts from.
    let (code, _, headers) = curl(
        emulator,
        &["https://kv-test.vault.azure.net/keys/unseal/?api-version=7.4"],
    );
    assert_eq!(code, 401);
    let challenge = headers.to_ascii_lowercase();
    assert!(
        challenge.contains(&format!(
            "www-authenticate: bearer authorization=\"https://login.microsoftonline.com/{}\", resource=\"https://vault.azure.net\"",
            emulator.tenant_id
        )),
        "{headers}"
    );
    let (code, answer) = token(emulator, "not-the-secret");
    assert_eq!(code, 401, "{answer}");
    assert!(
        answer["error_description"]
            .as_str()
            .unwrap()
            .starts_with("AADSTS7000215")
    );
    let (code, answer) = token(emulator, &emulator.secret);
    assert_eq!(code, 200, "{answer}");
    let access = answer["access_token"].as_str().unwrap().to_string();

    // Real RSA-OAEP-256: what is wrapped unwraps with the version that wrapped it, also after a
    // rotation made another version current.
    let secret = b"a 32-byte data encryption key!!!";
    let (first_version, first) = wrap(emulator, &access, secret);
    emulator.cloud.rotate_key("kv-test", "unseal").unwrap();
    let (second_version, _) = wrap(emulator, &access, b"after the rotation");
    assert_ne!(first_version, second_version);
    let (code, answer) = key_call(
        emulator,
        &access,
        &format!("/keys/unseal/{first_version}/unwrapkey"),
        Some(&serde_json::json!({"alg": "RSA-OAEP-256", "value": first})),
    );
    assert_eq!(code, 200, "{answer}");
    assert_eq!(
        URL_SAFE_NO_PAD
            .decode(answer["value"].as_str().unwrap())
            .unwrap(),
        secret
    );
    // The wrong version cannot unwrap it.
    let (code, _) = key_call(
        emulator,
        &access,
        &format!("/keys/unseal/{second_version}/unwrapkey"),
        Some(&serde_json::json!({"alg": "RSA-OAEP-256", "value": first})),
    );
    assert_eq!(code, 400);

    // A disabled key refuses; the key's attributes say so.
    assert!(emulator.cloud.set_key_enabled("kv-test", "unseal", false));
    let (code, answer) = key_call(
        emulator,
        &access,
        "/keys/unseal/wrapkey",
        Some(&serde_json::json!({"alg": "RSA-OAEP-256", "value": "AAAA"})),
    );
    assert_eq!(code, 403, "{answer}");
    let (code, bundle) = key_call(emulator, &access, "/keys/unseal", None);
    assert_eq!(code, 200);
    assert_eq!(bundle["attributes"]["enabled"], false);

    // The role revoked: 403 from RBAC, even for a read.
    assert_eq!(
        emulator
            .cloud
            .revoke_roles_on_vault(&emulator.client_id, "kv-test"),
        1
    );
    let (code, answer) = key_call(emulator, &access, "/keys/unseal", None);
    assert_eq!(code, 403);
    assert_eq!(answer["error"]["innererror"]["code"], "ForbiddenByRbac");

    // An expired client secret gets no more tokens.
    assert!(emulator.cloud.expire_client_secrets(&emulator.client_id));
    let (code, answer) = token(emulator, &emulator.secret);
    assert_eq!(code, 401, "{answer}");
    assert!(
        answer["error_description"]
            .as_str()
            .unwrap()
            .starts_with("AADSTS7000222")
    );
}
