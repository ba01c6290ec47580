//! planx's one HTTP policy, seen from outside: a redirect is never followed (a Vault token would
//! go with it), and `PLANX_CA_FILE` is read as a PEM bundle or refused with its path.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use planx::adapters::vault::Vault;
use planx::secrets::Secret;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// A server on loopback answering every request with `response`; counts the connections.
async fn answering(response: String) -> (u16, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let seen = Arc::new(AtomicUsize::new(0));
    let counter = seen.clone();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            counter.fetch_add(1, Ordering::SeqCst);
            let mut request = vec![0u8; 4096];
            let _ = stream.read(&mut request).await;
            let _ = stream.write_all(response.as_bytes()).await;
            let _ = stream.shutdown().await;
        }
    });
    (port, seen)
}

#[tokio::test]
async fn a_redirect_is_never_followed_with_a_token() {
    let (elsewhere, reached) = answering(
        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 2\r\n\r\n{}".into(),
    )
    .await;
    let (vault_port, _) = answering(format!(
        "HTTP/1.1 307 Temporary Redirect\r\nlocation: http://127.0.0.1:{elsewhere}/v1/auth/token/lookup-self\r\ncontent-length: 0\r\n\r\n"
    ))
    .await;
    let vault = Vault::new(&format!("http://127.0.0.1:{vault_port}"), &[]).unwrap();
    let error = vault
        .token_valid(&Secret::new("s.PLANTEDredirectToken"))
        .await
        .unwrap_err()
        .to_string();
    assert!(
        error.contains("307"),
        "the redirect is an answer, not followed: {error}"
    );
    assert!(!error.contains("PLANTED"), "{error}");
    assert_eq!(
        reached.load(Ordering::SeqCst),
        0,
        "nothing reached the other host"
    );
}

#[test]
fn the_extra_ca_bundle_is_read_or_refused_with_its_path() {
    let dir = std::env::temp_dir().join(format!("planx-http-policy-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let missing = dir.join("missing.pem");
    let error = planx::adapters::http::builder_with(&[], Some(&missing)).unwrap_err();
    assert!(
        error.starts_with("cannot read PLANX_CA_FILE") && error.contains("missing.pem"),
        "{error}"
    );
    let garbage = dir.join("garbage.pem");
    std::fs::write(&garbage, "not a certificate\n").unwrap();
    let error = planx::adapters::http::builder_with(&[], Some(&garbage)).unwrap_err();
    assert!(error.contains("garbage.pem"), "{error}");
    let authority = twin::tls::Authority::generate("planx test CA").unwrap();
    let ca = dir.join("ca.pem");
    std::fs::write(&ca, authority.ca_pem()).unwrap();
    let client = planx::adapters::http::builder_with(&[], Some(&ca))
        .unwrap()
        .build();
    assert!(client.is_ok(), "a PEM CA is trusted: {:?}", client.err());
    std::fs::remove_dir_all(&dir).ok();
}
