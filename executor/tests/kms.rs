//! `preflight.key-access` and `keys.disable` on AWS KMS and Google Cloud KMS against recorded
//! exchanges: the replay
//! server of `tests/replay` answers only the requests recorded in `tests/kms/*.json` (`aws-*`
//! shaped after the AWS KMS API reference, `gcp-*` after the Cloud KMS REST reference, each
//! file naming its page in `source`), checks the call each AWS request names in `X-Amz-Target`
//! and the bearer token of each Google request, hands the plaintext an encrypt sent back from
//! the decrypt, and fails the test on any other request or any recorded request left unmade.
//! The SigV4 signer is checked against AWS's published examples.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use planx::awskms::{
    self, AwsCredentials, AwsKmsError, KmsEndpoint, KmsKeyTarget, SigningRequest,
    sigv4_authorization,
};
use planx::engine::ActionError;
use planx::gcpckms::{self, CloudKmsEndpoint, CryptoKeyTarget, GcpCredential, GcpKmsError};
use planx::secrets::Secret;

mod replay;
use replay::{Answered, Fixtures, Replay};

/// The recordings in `tests/kms/`, shaped after AWS's and Google's documentation.
const FIXTURES: Fixtures = Fixtures {
    folder: "kms",
    documentation: &["https://docs.aws.amazon.com/", "https://cloud.google.com/"],
};

const REGION: &str = "us-east-1";
/// The key as the seal names it, and as DescribeKey resolves it.
const KEY_ALIAS: &str = "alias/vault-seal-new";
const KEY_ARN: &str = "arn:aws:kms:us-east-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab";
/// The IAM role the Vault pods use.
const ROLE: &str = "arn:aws:iam::111122223333:role/vault-seal";
const ACCESS_KEY_ID: &str = "AKIAIOSFODNN7EXAMPLE";
const SECRET_ACCESS_KEY: &str = "planted/aws+Secret+wJalrXUtnFEMIK7MDENG";
const SESSION_TOKEN: &str = "IQoJb3JpZ2luX2VjEplanted-session-token/A==";

const GCP_KEY: &str =
    "projects/vault-prod/locations/europe-west1/keyRings/vault/cryptoKeys/vault-seal-new";
/// The service account the Vault pods use.
const SERVICE_ACCOUNT: &str = "vault-seal@vault-prod.iam.gserviceaccount.com";
const GCP_TOKEN: &str = "ya29.planted-gcp-access-token";

const PLANTED: [&str; 3] = [SECRET_ACCESS_KEY, SESSION_TOKEN, GCP_TOKEN];

/// The calls of a whole AWS check with an identity, in order.
const AWS_CALLS: [&str; 4] = [
    "aws-describe-key#0",
    "aws-encrypt#0",
    "aws-decrypt#0",
    "aws-key-policy#0",
];
/// The calls of a whole Google check with an identity, in order.
const GCP_CALLS: [&str; 4] = [
    "gcp-crypto-key#0",
    "gcp-encrypt#0",
    "gcp-decrypt#0",
    "gcp-iam-policy#0",
];

fn aws_credentials() -> AwsCredentials {
    AwsCredentials {
        access_key_id: ACCESS_KEY_ID.into(),
        secret_access_key: Secret::new(SECRET_ACCESS_KEY),
        session_token: Some(Secret::new(SESSION_TOKEN)),
    }
}

fn aws_target() -> KmsKeyTarget {
    KmsKeyTarget {
        region: REGION.into(),
        kms_key_id: KEY_ALIAS.into(),
    }
}

fn aws_endpoint(replay: &Replay) -> KmsEndpoint {
    KmsEndpoint {
        url_template: replay.base.clone(),
    }
}

async fn check_aws(replay: &Replay, identity: &str) -> Result<String, AwsKmsError> {
    awskms::check_key_access(
        &aws_endpoint(replay),
        &aws_credentials(),
        &aws_target(),
        identity,
    )
    .await
}

fn gcp_target() -> CryptoKeyTarget {
    CryptoKeyTarget {
        project: "vault-prod".into(),
        region: "europe-west1".into(),
        key_ring: "vault".into(),
        crypto_key: "vault-seal-new".into(),
    }
}

fn gcp_endpoint(replay: &Replay) -> CloudKmsEndpoint {
    CloudKmsEndpoint {
        url: format!("{}/v1", replay.base),
    }
}

async fn check_gcp(replay: &Replay, identity: &str) -> Result<String, GcpKmsError> {
    gcpckms::check_key_access(
        &gcp_endpoint(replay),
        &GcpCredential::AccessToken(Secret::new(GCP_TOKEN)),
        &gcp_target(),
        identity,
    )
    .await
}

/// The error's text and Debug, checked to hold no secret.
fn message_without_secrets(error: &(impl std::fmt::Display + std::fmt::Debug)) -> String {
    let message = error.to_string();
    let debug = format!("{error:?}");
    for planted in PLANTED {
        assert!(
            !message.contains(planted) && !debug.contains(planted),
            "a secret leaked into the error: {message} / {debug}"
        );
    }
    message
}

/// The plaintext the encrypt sent, decoded, as the recording kept it under `name`.
fn probe_sent(replay: &Replay, name: &str) -> Vec<u8> {
    let encoded = replay.kept(name).expect("an encrypt was sent");
    base64::engine::general_purpose::STANDARD
        .decode(encoded)
        .expect("base64 plaintext")
}

/// Every request is signed as AWS documents it: `Authorization` of the SigV4 shape over
/// content-type, host, x-amz-date, x-amz-security-token and x-amz-target, with a signature that
/// covers what was sent (recomputed here from the request as it arrived).
fn assert_signed_with_sigv4(requests: &[Answered]) {
    for request in requests {
        let date = request.headers.get("x-amz-date").expect("x-amz-date");
        assert!(
            date.len() == 16
                && date.as_bytes()[8] == b'T'
                && date.ends_with('Z')
                && date[..8]
                    .bytes()
                    .chain(date[9..15].bytes())
                    .all(|b| b.is_ascii_digit()),
            "{}: x-amz-date {date}",
            request.exchange
        );
        let authorization = request.headers.get("authorization").expect("authorization");
        let prefix = format!(
            "AWS4-HMAC-SHA256 Credential={ACCESS_KEY_ID}/{}/{REGION}/kms/aws4_request, SignedHeaders=content-type;host;x-amz-date;x-amz-security-token;x-amz-target, Signature=",
            &date[..8]
        );
        let signature = authorization
            .strip_prefix(&prefix)
            .unwrap_or_else(|| panic!("{}: {authorization}", request.exchange));
        assert!(
            signature.len() == 64
                && signature
                    .bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)),
            "{}: signature {signature}",
            request.exchange
        );
        assert_eq!(
            request
                .headers
                .get("x-amz-security-token")
                .map(String::as_str),
            Some(SESSION_TOKEN)
        );
        let signed: Vec<(&str, &str)> = [
            "content-type",
            "host",
            "x-amz-date",
            "x-amz-security-token",
            "x-amz-target",
        ]
        .into_iter()
        .map(|name| (name, request.headers[name].as_str()))
        .collect();
        let recomputed = sigv4_authorization(
            &aws_credentials(),
            REGION,
            "kms",
            date,
            &SigningRequest {
                method: &request.method,
                path: &request.target,
                query: &[],
                headers: &signed,
                payload: request.body.as_bytes(),
            },
        );
        assert_eq!(
            authorization, &recomputed,
            "{}: the signature covers what was sent",
            request.exchange
        );
    }
}

#[tokio::test]
async fn aws_key_passes_with_signed_calls_in_order() {
    let replay = Replay::start(
        &FIXTURES,
        &[
            "aws-describe-key",
            "aws-encrypt",
            "aws-decrypt",
            "aws-key-policy",
        ],
    )
    .await;
    let summary = check_aws(&replay, ROLE).await.expect("access");
    assert_eq!(
        summary,
        format!(
            "key {KEY_ARN} enabled (SYMMETRIC_DEFAULT, ENCRYPT_DECRYPT); encrypt and decrypt succeeded as the operator, which proves the key works, not that the Vault pods' role may use it; the key policy allows {ROLE} kms:Encrypt, kms:Decrypt, kms:DescribeKey"
        )
    );
    assert_eq!(probe_sent(&replay, "aws-plaintext").len(), 32);
    let requests = replay.finish_with_requests();
    let calls: Vec<&str> = requests.iter().map(|r| r.exchange.as_str()).collect();
    assert_eq!(calls, AWS_CALLS);
    assert_signed_with_sigv4(&requests);
    for request in &requests {
        assert_eq!(
            (request.method.as_str(), request.target.as_str()),
            ("POST", "/")
        );
        assert!(!request.body.contains(SECRET_ACCESS_KEY));
    }
}

#[tokio::test]
async fn aws_key_policy_without_the_role_warns_but_passes() {
    let replay = Replay::start(
        &FIXTURES,
        &[
            "aws-describe-key",
            "aws-encrypt",
            "aws-decrypt",
            "aws-key-policy-other-role",
        ],
    )
    .await;
    let summary = check_aws(&replay, ROLE)
        .await
        .expect("a warning, not a failure");
    assert!(
        summary.ends_with(&format!(
            "; warning: the key policy does not allow {ROLE} kms:Encrypt, kms:Decrypt, kms:DescribeKey; an IAM policy on it or a grant must allow them (the key policy lets IAM policies in account 111122223333 allow access)"
        )),
        "{summary}"
    );
    replay.finish();
}

#[tokio::test]
async fn aws_key_policy_closed_to_iam_says_only_a_grant_can_allow() {
    let replay = Replay::start(
        &FIXTURES,
        &[
            "aws-describe-key",
            "aws-encrypt",
            "aws-decrypt",
            "aws-key-policy-without-iam",
        ],
    )
    .await;
    let summary = check_aws(&replay, ROLE)
        .await
        .expect("a warning, not a failure");
    assert!(
        summary.ends_with(&format!(
            "; warning: the key policy does not allow {ROLE} kms:Encrypt, kms:Decrypt, kms:DescribeKey; only a grant can allow them, since the key policy does not let IAM policies in account 111122223333 allow access; add {ROLE} to the key policy"
        )),
        "{summary}"
    );
    replay.finish();
}

#[tokio::test]
async fn aws_without_identity_skips_the_key_policy() {
    let replay = Replay::start(
        &FIXTURES,
        &["aws-describe-key", "aws-encrypt", "aws-decrypt"],
    )
    .await;
    let summary = check_aws(&replay, " ").await.expect("access");
    assert!(
        summary.ends_with(
            "; set `identity:` to the ARN of the role the Vault pods use to check the key policy too"
        ),
        "{summary}"
    );
    assert_eq!(replay.finish(), AWS_CALLS[..3]);
}

#[tokio::test]
async fn aws_disabled_key_fails_before_encrypting() {
    let replay = Replay::start(&FIXTURES, &["aws-describe-key-disabled"]).await;
    let error = check_aws(&replay, ROLE).await.expect_err("disabled");
    let message = message_without_secrets(&error);
    assert_eq!(
        message,
        format!(
            "key {KEY_ARN} is disabled: the seal cannot encrypt or decrypt with it; enable it with: aws kms enable-key --key-id {KEY_ARN} --region {REGION}"
        )
    );
    assert!(!error.is_transient());
    assert_eq!(replay.finish(), ["aws-describe-key-disabled#0"]);
}

#[tokio::test]
async fn aws_access_denied_on_decrypt_names_kms_decrypt() {
    let replay = Replay::start(
        &FIXTURES,
        &[
            "aws-describe-key",
            "aws-encrypt",
            "aws-decrypt-access-denied",
        ],
    )
    .await;
    let error = check_aws(&replay, ROLE).await.expect_err("denied");
    let message = message_without_secrets(&error);
    assert!(
        message.starts_with(&format!(
            "AWS KMS Decrypt with {KEY_ARN}: HTTP 400 AccessDeniedException: User: arn:aws:iam::111122223333:user/operator is not authorized to perform: kms:Decrypt"
        )),
        "{message}"
    );
    assert!(
        message.ends_with("; the operator running planx needs kms:Decrypt on the key"),
        "{message}"
    );
    assert!(!error.is_transient());
    let action: ActionError = error.into();
    assert!(!action.transient);
    replay.finish();
}

#[tokio::test]
async fn aws_throttling_is_transient() {
    let replay = Replay::start(&FIXTURES, &["aws-describe-key-throttled"]).await;
    let error = check_aws(&replay, ROLE).await.expect_err("throttled");
    let message = message_without_secrets(&error);
    assert!(
        message.starts_with(&format!(
            "AWS KMS DescribeKey with {KEY_ALIAS}: HTTP 400 ThrottlingException: You have exceeded the rate"
        )),
        "{message}"
    );
    assert!(error.is_transient());
    let action: ActionError = error.into();
    assert!(action.transient);
    replay.finish();
}

#[tokio::test]
async fn aws_missing_key_names_key_and_region() {
    let replay = Replay::start(&FIXTURES, &["aws-describe-key-not-found"]).await;
    let error = check_aws(&replay, ROLE).await.expect_err("no key");
    let message = message_without_secrets(&error);
    assert!(
        message.starts_with(&format!(
            "AWS KMS has no key {KEY_ALIAS} in region {REGION} (NotFoundException: Alias"
        )),
        "{message}"
    );
    assert!(!error.is_transient());
    replay.finish();
}

#[tokio::test]
async fn aws_decrypt_returning_other_bytes_fails() {
    let replay = Replay::start(
        &FIXTURES,
        &[
            "aws-describe-key",
            "aws-encrypt",
            "aws-decrypt-other-plaintext",
        ],
    )
    .await;
    let error = check_aws(&replay, ROLE).await.expect_err("other bytes");
    assert_eq!(
        message_without_secrets(&error),
        format!(
            "AWS KMS Decrypt with {KEY_ARN}: unexpected answer: the plaintext that came back is not the one encrypted"
        )
    );
    replay.finish();
}

#[tokio::test]
async fn aws_identity_and_region_are_checked_before_any_call() {
    let replay = Replay::start(&FIXTURES, &[]).await;
    for identity in [
        "vault-seal",
        "arn:aws:sts::111122223333:assumed-role/vault-seal/pod",
        "arn:aws:iam::1111:role/vault-seal",
    ] {
        let error = check_aws(&replay, identity).await.expect_err("not a role");
        assert!(
            error
                .to_string()
                .starts_with(&format!("`identity: {identity}` is not an IAM role ARN")),
            "{error}"
        );
    }
    let mut elsewhere = aws_target();
    elsewhere.kms_key_id = "arn:aws:kms:eu-west-1:111122223333:key/1234abcd".into();
    let error =
        awskms::check_key_access(&aws_endpoint(&replay), &aws_credentials(), &elsewhere, ROLE)
            .await
            .expect_err("other region");
    assert_eq!(
        error.to_string(),
        "the key arn:aws:kms:eu-west-1:111122223333:key/1234abcd is in region eu-west-1, the target says `region: us-east-1`"
    );
    assert!(replay.finish().is_empty());
}

/// Known answers of AWS Signature Version 4. The first is the worked example of the SigV4
/// documentation (GET `https://iam.amazonaws.com/?Action=ListUsers&Version=2010-05-08`, formerly
/// at <https://docs.aws.amazon.com/general/latest/gr/sigv4-calculate-signature.html>); the others
/// are cases of AWS's `aws-sig-v4-test-suite` (`get-vanilla`, `get-vanilla-query-order-key-case`,
/// `get-header-value-trim`, `post-x-www-form-urlencoded`, `post-sts-header-before`), with its
/// credentials `AKIDEXAMPLE` / `wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY` at 20150830T123600Z.
/// Besides their publication, the IAM, get-vanilla, form and STS signatures were recomputed
/// independently with `openssl dgst -sha256 -mac HMAC` over the canonical requests.
#[test]
fn sigv4_matches_the_published_examples() {
    const SUITE_TOKEN: &str = "AQoDYXdzEPT//////////wEXAMPLEtc764bNrC9SAPBSM22wDOk4x4HIZ8j4FZTwdQWLWsKWHGBuFqwAeMicRXmxfpSPfIeoIYRqTflfKD8YUuwthAx7mSEI/qkPpKPi/kMcGdQrmGdeehM4IC1NtBmUpp2wUE8phUZampKsburEDy0KPkyQDYwT7WZ0wq5VSXDvp75YU9HFvlRd8Tx6q6fE8YQcHNVXAkiY9q6d+xo0rKwT38xVqr7ZD0u0iPPkUL64lIZbqBAz+scqKmlzm8FDrypNC9Yjc8fPOLn9FX9KSYvKTr4rvx3iSIlTJabIQwj2ICCR/oLxBA==";
    let credentials = AwsCredentials {
        access_key_id: "AKIDEXAMPLE".into(),
        secret_access_key: Secret::new("wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"),
        session_token: None,
    };
    let date = "20150830T123600Z";
    struct Case {
        name: &'static str,
        service: &'static str,
        method: &'static str,
        query: &'static [(&'static str, &'static str)],
        headers: Vec<(&'static str, &'static str)>,
        payload: &'static [u8],
        authorization: &'static str,
    }
    let cases = [
        Case {
            name: "IAM ListUsers, the SigV4 documentation's example",
            service: "iam",
            method: "GET",
            query: &[("Action", "ListUsers"), ("Version", "2010-05-08")],
            headers: vec![
                (
                    "Content-Type",
                    "application/x-www-form-urlencoded; charset=utf-8",
                ),
                ("Host", "iam.amazonaws.com"),
                ("X-Amz-Date", date),
            ],
            payload: b"",
            authorization: "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/iam/aws4_request, SignedHeaders=content-type;host;x-amz-date, Signature=5d672d79c15b13162d9279b0855cfba6789a8edb4c82c400e06b5924a6f2b5d7",
        },
        Case {
            name: "get-vanilla",
            service: "service",
            method: "GET",
            query: &[],
            headers: vec![("Host", "example.amazonaws.com"), ("X-Amz-Date", date)],
            payload: b"",
            authorization: "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, SignedHeaders=host;x-amz-date, Signature=5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31",
        },
        Case {
            name: "get-vanilla-query-order-key-case",
            service: "service",
            method: "GET",
            query: &[("Param2", "value2"), ("Param1", "value1")],
            headers: vec![("Host", "example.amazonaws.com"), ("X-Amz-Date", date)],
            payload: b"",
            authorization: "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, SignedHeaders=host;x-amz-date, Signature=b97d918cfa904a5beff61c982a1b6f458b799221646efd99d3219ec94cdf2500",
        },
        Case {
            name: "get-header-value-trim",
            service: "service",
            method: "GET",
            query: &[],
            headers: vec![
                ("Host", "example.amazonaws.com"),
                ("My-Header1", " value1"),
                ("My-Header2", " \"a   b   c\""),
                ("X-Amz-Date", date),
            ],
            payload: b"",
            authorization: "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, SignedHeaders=host;my-header1;my-header2;x-amz-date, Signature=acc3ed3afb60bb290fc8d2dd0098b9911fcaa05412b367055dee359757a9c736",
        },
        Case {
            name: "post-x-www-form-urlencoded",
            service: "service",
            method: "POST",
            query: &[],
            headers: vec![
                ("Content-Type", "application/x-www-form-urlencoded"),
                ("Host", "example.amazonaws.com"),
                ("X-Amz-Date", date),
            ],
            payload: b"Param1=value1",
            authorization: "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, SignedHeaders=content-type;host;x-amz-date, Signature=ff11897932ad3f4e8b18135d722051e5ac45fc38421b1da7b9d196a0fe09473a",
        },
        Case {
            name: "post-sts-header-before",
            service: "service",
            method: "POST",
            query: &[],
            headers: vec![
                ("Host", "example.amazonaws.com"),
                ("X-Amz-Date", date),
                ("X-Amz-Security-Token", SUITE_TOKEN),
            ],
            payload: b"",
            authorization: "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, SignedHeaders=host;x-amz-date;x-amz-security-token, Signature=85d96828115b5dc0cfc3bd16ad9e210dd772bbebba041836c64533a82be05ead",
        },
    ];
    for case in &cases {
        let authorization = sigv4_authorization(
            &credentials,
            "us-east-1",
            case.service,
            date,
            &SigningRequest {
                method: case.method,
                path: "/",
                query: case.query,
                headers: &case.headers,
                payload: case.payload,
            },
        );
        assert_eq!(authorization, case.authorization, "{}", case.name);
    }
}

#[test]
fn aws_credentials_come_from_their_variables() {
    let credentials = |pairs: &[(&str, &str)]| {
        let variables: BTreeMap<&str, &str> = pairs.iter().copied().collect();
        AwsCredentials::from_lookup(|name| variables.get(name).map(|v| v.to_string()))
    };
    let all = [
        ("AWS_ACCESS_KEY_ID", ACCESS_KEY_ID),
        ("AWS_SECRET_ACCESS_KEY", SECRET_ACCESS_KEY),
        ("AWS_SESSION_TOKEN", SESSION_TOKEN),
    ];
    let read = credentials(&all).expect("credentials");
    assert_eq!(read, aws_credentials());
    let debug = format!("{read:?}");
    assert!(debug.contains(ACCESS_KEY_ID), "{debug}");
    assert!(
        !debug.contains(SECRET_ACCESS_KEY) && !debug.contains(SESSION_TOKEN),
        "{debug}"
    );
    assert_eq!(
        credentials(&[all[0], all[1], ("AWS_SESSION_TOKEN", " ")])
            .expect("long-term credentials")
            .session_token,
        None
    );

    let error = credentials(&[all[0], ("AWS_PROFILE", "prod-admin")]).expect_err("no secret key");
    let message = message_without_secrets(&error);
    assert!(
        message.contains("AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"),
        "{message}"
    );
    assert!(
        message.contains(
            "AWS_PROFILE=prod-admin is set, but planx reads no profiles: run `eval \"$(aws configure export-credentials --profile prod-admin --format env)\"`"
        ),
        "{message}"
    );
    assert!(!error.is_transient());
    let message = credentials(&[]).expect_err("nothing").to_string();
    assert!(
        message.ends_with(
            "export them first with `eval \"$(aws configure export-credentials --format env)\"`"
        ),
        "{message}"
    );
}

#[test]
fn aws_endpoint_is_regional_unless_overridden() {
    let regional = KmsEndpoint::from_lookup(|_| None);
    assert_eq!(regional, KmsEndpoint::default());
    assert_eq!(
        regional.url("eu-west-1"),
        "https://kms.eu-west-1.amazonaws.com"
    );
    let fips = KmsEndpoint::from_lookup(|name| {
        (name == "PLANX_AWS_KMS_URL").then(|| "https://kms-fips.{region}.amazonaws.com/".into())
    });
    assert_eq!(
        fips.url("us-east-1"),
        "https://kms-fips.us-east-1.amazonaws.com"
    );
    let blank = KmsEndpoint::from_lookup(|_| Some("  ".into()));
    assert_eq!(blank, KmsEndpoint::default());
}

#[test]
fn gcp_endpoint_and_credential_come_from_their_variables() {
    assert_eq!(
        CloudKmsEndpoint::from_lookup(|_| None).url,
        "https://cloudkms.googleapis.com/v1"
    );
    assert_eq!(
        CloudKmsEndpoint::from_lookup(|name| {
            (name == "PLANX_GCP_KMS_URL").then(|| "http://127.0.0.1:9/v1/".into())
        })
        .url,
        "http://127.0.0.1:9/v1"
    );
    let token = GcpCredential::from_lookup(|name| {
        (name == "GOOGLE_OAUTH_ACCESS_TOKEN").then(|| format!(" {GCP_TOKEN}\n"))
    });
    assert_eq!(token, GcpCredential::AccessToken(Secret::new(GCP_TOKEN)));
    assert!(!format!("{token:?}").contains(GCP_TOKEN));
    let gcloud = GcpCredential::Gcloud {
        program: PathBuf::from("gcloud"),
    };
    assert_eq!(GcpCredential::from_lookup(|_| None), gcloud);
    assert_eq!(GcpCredential::from_lookup(|_| Some(String::new())), gcloud);
}

#[tokio::test]
async fn gcp_key_passes_with_its_calls_in_order() {
    let replay = Replay::start(
        &FIXTURES,
        &[
            "gcp-crypto-key",
            "gcp-encrypt",
            "gcp-decrypt",
            "gcp-iam-policy",
        ],
    )
    .await;
    let summary = check_gcp(&replay, SERVICE_ACCOUNT).await.expect("access");
    assert_eq!(
        summary,
        format!(
            "key {GCP_KEY} (ENCRYPT_DECRYPT) primary version 3 enabled; encrypt and decrypt succeeded as the operator, which proves the key works, not that the Vault pods' service account may use it; serviceAccount:{SERVICE_ACCOUNT} holds roles/cloudkms.cryptoKeyEncrypterDecrypter on the key"
        )
    );
    assert_eq!(probe_sent(&replay, "gcp-plaintext").len(), 32);
    assert_eq!(replay.finish(), GCP_CALLS);
}

#[tokio::test]
async fn gcp_policy_without_the_service_account_is_a_note() {
    let replay = Replay::start(
        &FIXTURES,
        &[
            "gcp-crypto-key",
            "gcp-encrypt",
            "gcp-decrypt",
            "gcp-iam-policy-other-members",
        ],
    )
    .await;
    let summary = check_gcp(&replay, &format!("serviceAccount:{SERVICE_ACCOUNT}"))
        .await
        .expect("a note, not a failure");
    assert!(
        summary.ends_with(&format!(
            "; note: serviceAccount:{SERVICE_ACCOUNT} does not hold roles/cloudkms.cryptoKeyEncrypterDecrypter on the key itself; it may hold it on the key ring or the project, or grant it with: gcloud kms keys add-iam-policy-binding vault-seal-new --keyring vault --location europe-west1 --project vault-prod --member serviceAccount:{SERVICE_ACCOUNT} --role roles/cloudkms.cryptoKeyEncrypterDecrypter"
        )),
        "{summary}"
    );
    replay.finish();
}

#[tokio::test]
async fn gcp_without_identity_skips_the_iam_policy() {
    let replay = Replay::start(&FIXTURES, &["gcp-crypto-key", "gcp-encrypt", "gcp-decrypt"]).await;
    let summary = check_gcp(&replay, "").await.expect("access");
    assert!(
        summary.ends_with("to check the key's IAM policy too"),
        "{summary}"
    );
    assert_eq!(replay.finish(), GCP_CALLS[..3]);
}

#[tokio::test]
async fn gcp_disabled_primary_version_fails_before_encrypting() {
    let replay = Replay::start(&FIXTURES, &["gcp-crypto-key-version-disabled"]).await;
    let error = check_gcp(&replay, SERVICE_ACCOUNT)
        .await
        .expect_err("disabled");
    assert_eq!(
        message_without_secrets(&error),
        format!(
            "primary version 3 of key {GCP_KEY} is disabled: the seal cannot encrypt or decrypt with it; enable it with: gcloud kms keys versions enable 3 --key vault-seal-new --keyring vault --location europe-west1 --project vault-prod"
        )
    );
    assert!(!error.is_transient());
    assert_eq!(replay.finish(), ["gcp-crypto-key-version-disabled#0"]);
}

#[tokio::test]
async fn gcp_permission_denied_on_encrypt_names_the_permission() {
    let replay = Replay::start(
        &FIXTURES,
        &["gcp-crypto-key", "gcp-encrypt-permission-denied"],
    )
    .await;
    let error = check_gcp(&replay, SERVICE_ACCOUNT)
        .await
        .expect_err("denied");
    let message = message_without_secrets(&error);
    assert!(
        message.starts_with(&format!(
            "Cloud KMS encrypt {GCP_KEY}: HTTP 403 PERMISSION_DENIED: Permission 'cloudkms.cryptoKeyVersions.useToEncrypt' denied"
        )),
        "{message}"
    );
    assert!(
        message.ends_with(
            "; the operator running planx needs cloudkms.cryptoKeyVersions.useToEncrypt (roles/cloudkms.cryptoKeyEncrypterDecrypter) on the key"
        ),
        "{message}"
    );
    assert!(!error.is_transient());
    replay.finish();
}

#[tokio::test]
async fn gcp_missing_key_names_its_path() {
    let replay = Replay::start(&FIXTURES, &["gcp-crypto-key-not-found"]).await;
    let error = check_gcp(&replay, SERVICE_ACCOUNT)
        .await
        .expect_err("no key");
    let message = message_without_secrets(&error);
    assert!(
        message.starts_with(&format!(
            "Cloud KMS has no key {GCP_KEY} (NOT_FOUND: CryptoKey {GCP_KEY} not found.)"
        )),
        "{message}"
    );
    assert!(!error.is_transient());
    replay.finish();
}

#[tokio::test]
async fn gcp_forbidden_iam_policy_names_get_iam_policy() {
    let replay = Replay::start(
        &FIXTURES,
        &[
            "gcp-crypto-key",
            "gcp-encrypt",
            "gcp-decrypt",
            "gcp-iam-policy-forbidden",
        ],
    )
    .await;
    let error = check_gcp(&replay, SERVICE_ACCOUNT).await.expect_err("403");
    let message = message_without_secrets(&error);
    assert!(
        message.starts_with(&format!(
            "Cloud KMS getIamPolicy {GCP_KEY}: HTTP 403 PERMISSION_DENIED"
        )),
        "{message}"
    );
    assert!(
        message.contains("the operator running planx needs cloudkms.cryptoKeys.getIamPolicy"),
        "{message}"
    );
    replay.finish();
}

#[tokio::test]
async fn gcp_throttling_is_transient() {
    let replay = Replay::start(&FIXTURES, &["gcp-crypto-key-throttled"]).await;
    let error = check_gcp(&replay, SERVICE_ACCOUNT).await.expect_err("429");
    let message = message_without_secrets(&error);
    assert!(
        message.contains("HTTP 429 RESOURCE_EXHAUSTED: Quota exceeded"),
        "{message}"
    );
    assert!(error.is_transient());
    replay.finish();
}

#[tokio::test]
async fn gcp_decrypt_returning_other_bytes_fails() {
    let replay = Replay::start(
        &FIXTURES,
        &[
            "gcp-crypto-key",
            "gcp-encrypt",
            "gcp-decrypt-other-plaintext",
        ],
    )
    .await;
    let error = check_gcp(&replay, SERVICE_ACCOUNT)
        .await
        .expect_err("other bytes");
    assert_eq!(
        message_without_secrets(&error),
        format!(
            "Cloud KMS decrypt with {GCP_KEY}: unexpected answer: the plaintext that came back is not the one encrypted"
        )
    );
    replay.finish();
}

#[tokio::test]
async fn gcp_identity_is_checked_before_any_call() {
    let replay = Replay::start(&FIXTURES, &[]).await;
    for identity in ["vault-seal", "user:ops@example.com", "vault@example.com"] {
        let error = check_gcp(&replay, identity)
            .await
            .expect_err("not a service account");
        assert!(
            error
                .to_string()
                .starts_with(&format!("`identity: {identity}` is not a service account")),
            "{error}"
        );
    }
    assert!(replay.finish().is_empty());
}

#[tokio::test]
async fn gcp_token_comes_from_gcloud_when_not_given() {
    let dir = scratch_dir("gcloud");
    let signed_in = dir.join("gcloud");
    let signed_out = dir.join("gcloud-signed-out");
    let _ = std::fs::remove_file(dir.join("gcloud.calls"));
    write_script(
        &signed_in,
        &format!(
            "#!/bin/sh\nprintf '%s\\n' \"$*\" >> \"$0.calls\"\nprintf '%s\\n' '{GCP_TOKEN}'\n"
        ),
    );
    write_script(
        &signed_out,
        "#!/bin/sh\necho 'ERROR: (gcloud.auth.print-access-token) You do not currently have an active account selected.' >&2\nexit 1\n",
    );

    let replay = Replay::start(
        &FIXTURES,
        &[
            "gcp-crypto-key",
            "gcp-encrypt",
            "gcp-decrypt",
            "gcp-iam-policy",
        ],
    )
    .await;
    let credential = GcpCredential::Gcloud { program: signed_in };
    gcpckms::check_key_access(
        &gcp_endpoint(&replay),
        &credential,
        &gcp_target(),
        SERVICE_ACCOUNT,
    )
    .await
    .expect("access with gcloud's token");
    assert_eq!(replay.finish(), GCP_CALLS);
    let calls = std::fs::read_to_string(dir.join("gcloud.calls")).expect("calls");
    assert_eq!(
        calls.lines().collect::<Vec<_>>(),
        ["auth print-access-token"]
    );

    let replay = Replay::start(&FIXTURES, &[]).await;
    let credential = GcpCredential::Gcloud {
        program: signed_out.clone(),
    };
    let error = gcpckms::check_key_access(&gcp_endpoint(&replay), &credential, &gcp_target(), "")
        .await
        .expect_err("signed out");
    let message = message_without_secrets(&error);
    assert!(
        message.starts_with(&format!(
            "`{} auth print-access-token` failed",
            signed_out.display()
        )),
        "{message}"
    );
    assert!(
        message.contains("You do not currently have an active account"),
        "{message}"
    );
    assert!(!error.is_transient());
    assert!(replay.finish().is_empty());
    std::fs::remove_dir_all(dir).ok();
}

fn scratch_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("planx-kms-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("scratch dir");
    dir
}

fn write_script(path: &Path, text: &str) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::write(path, text).expect("script");
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
}

/// One `preflight.key-access` step on an awskms target and one on a gcpckms target.
const KEY_ACCESS_PLAN: &str = r#"
version: 1
name: kms-key-access
targets:
  aws_keys:
    kind: awskms
    region: us-east-1
    kms_key_id: alias/vault-seal-new
  gcp_keys:
    kind: gcpckms
    project: vault-prod
    region: europe-west1
    key_ring: vault
    crypto_key: vault-seal-new
steps:
  - id: aws-key-access
    uses: preflight.key-access
    on: aws_keys
    with: {identity: "arn:aws:iam::111122223333:role/vault-seal"}
  - id: gcp-key-access
    uses: preflight.key-access
    on: gcp_keys
    with: {identity: "vault-seal@vault-prod.iam.gserviceaccount.com"}
"#;

#[test]
fn targets_from_the_compiled_attributes() {
    struct Text;
    impl planc::Loader for Text {
        fn load(&self, _: &Path) -> std::io::Result<String> {
            Ok(KEY_ACCESS_PLAN.into())
        }
    }
    let compilation = planc::compile(
        &planc::CompileRequest {
            plan: "kms-key-access.yaml".into(),
            ..Default::default()
        },
        &Text,
    )
    .expect("compile");
    let plan = compilation
        .plan
        .unwrap_or_else(|| panic!("{:?}", compilation.diagnostics));
    assert_eq!(
        KmsKeyTarget::from_compiled(&plan.targets["aws_keys"]).expect("aws attributes"),
        aws_target()
    );
    let gcp = CryptoKeyTarget::from_compiled(&plan.targets["gcp_keys"]).expect("gcp attributes");
    assert_eq!(gcp, gcp_target());
    assert_eq!(gcp.resource_name(), GCP_KEY);

    let mut aws = plan.targets["aws_keys"].clone();
    aws.attributes.shift_remove("kms_key_id");
    assert_eq!(
        KmsKeyTarget::from_compiled(&aws)
            .expect_err("no key")
            .to_string(),
        "the awskms target `aws_keys` has no `kms_key_id`"
    );
    let mut gcp = plan.targets["gcp_keys"].clone();
    gcp.attributes.shift_remove("key_ring");
    assert_eq!(
        CryptoKeyTarget::from_compiled(&gcp)
            .expect_err("no ring")
            .to_string(),
        "the gcpckms target `gcp_keys` has no `key_ring`"
    );
}

/// `planx apply` on the plan above, in `dir`, with `env` and nothing else of the caller's cloud
/// environment; a kubeconfig without clusters, since the plan has none.
async fn planx_apply(dir: &Path, env: &[(&str, String)]) -> std::process::Output {
    std::fs::write(dir.join("kms-key-access.yaml"), KEY_ACCESS_PLAN).expect("plan");
    std::fs::write(
        dir.join("kubeconfig"),
        "apiVersion: v1\nkind: Config\nclusters: []\ncontexts: []\nusers: []\n",
    )
    .expect("kubeconfig");
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_planx"));
    command
        .args(["apply", "kms-key-access.yaml", "--yes"])
        .current_dir(dir)
        .env("KUBECONFIG", dir.join("kubeconfig"))
        .env("PATH", dir);
    for name in [
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_SESSION_TOKEN",
        "AWS_PROFILE",
        "PLANX_AWS_KMS_URL",
        "GOOGLE_OAUTH_ACCESS_TOKEN",
        "PLANX_GCP_KMS_URL",
    ] {
        command.env_remove(name);
    }
    for (name, value) in env {
        command.env(name, value);
    }
    command.output().await.expect("planx runs")
}

#[tokio::test]
async fn the_action_checks_both_kinds_with_credentials_from_the_environment() {
    let replay = Replay::start(
        &FIXTURES,
        &[
            "aws-describe-key",
            "aws-encrypt",
            "aws-decrypt",
            "aws-key-policy",
            "gcp-crypto-key",
            "gcp-encrypt",
            "gcp-decrypt",
            "gcp-iam-policy",
        ],
    )
    .await;
    let dir = scratch_dir("action");
    let output = planx_apply(
        &dir,
        &[
            ("AWS_ACCESS_KEY_ID", ACCESS_KEY_ID.into()),
            ("AWS_SECRET_ACCESS_KEY", SECRET_ACCESS_KEY.into()),
            ("AWS_SESSION_TOKEN", SESSION_TOKEN.into()),
            ("PLANX_AWS_KMS_URL", replay.base.clone()),
            ("GOOGLE_OAUTH_ACCESS_TOKEN", GCP_TOKEN.into()),
            ("PLANX_GCP_KMS_URL", format!("{}/v1", replay.base)),
        ],
    )
    .await;
    let stderr = String::from_utf8_lossy(&output.stderr);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}\n{stderr}");
    assert!(stderr.contains("ok        aws-key-access"), "{stderr}");
    assert!(stderr.contains("ok        gcp-key-access"), "{stderr}");
    for planted in PLANTED {
        assert!(!stdout.contains(planted) && !stderr.contains(planted));
    }
    // Each check drew its own random probe.
    let (aws_probe, gcp_probe) = (
        probe_sent(&replay, "aws-plaintext"),
        probe_sent(&replay, "gcp-plaintext"),
    );
    assert_eq!((aws_probe.len(), gcp_probe.len()), (32, 32));
    assert_ne!(aws_probe, gcp_probe);
    let requests = replay.finish_with_requests();
    let aws: Vec<Answered> = requests
        .into_iter()
        .filter(|request| request.exchange.starts_with("aws-"))
        .collect();
    assert_eq!(aws.len(), 4);
    assert_signed_with_sigv4(&aws);
    std::fs::remove_dir_all(dir).ok();
}

#[tokio::test]
async fn the_action_fails_without_credentials_and_names_what_to_set() {
    let replay = Replay::start(&FIXTURES, &[]).await;
    let dir = scratch_dir("action-without-credentials");
    // No AWS variables, and no `gcloud` on the PATH (the scratch folder).
    let output = planx_apply(
        &dir,
        &[
            ("PLANX_AWS_KMS_URL", replay.base.clone()),
            ("PLANX_GCP_KMS_URL", format!("{}/v1", replay.base)),
        ],
    )
    .await;
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{stderr}");
    // Both steps run, and each names what to set.
    assert!(
        stderr.contains("failed    aws-key-access  planx calls AWS KMS with the operator's credentials from AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"),
        "{stderr}"
    );
    assert!(
        stderr.contains("failed    gcp-key-access  cannot run `gcloud auth print-access-token`"),
        "{stderr}"
    );
    assert!(stderr.contains("set GOOGLE_OAUTH_ACCESS_TOKEN"), "{stderr}");
    assert!(replay.finish().is_empty());
    std::fs::remove_dir_all(dir).ok();
}

/// `keys.disable` on the Google key as the action runs it: the policy read, set without the
/// account when it held the role, the summary.
async fn withdraw_gcp(replay: &Replay) -> Result<String, GcpKmsError> {
    let credential = GcpCredential::AccessToken(Secret::new(GCP_TOKEN));
    let target = gcp_target();
    let withdrawal =
        gcpckms::plan_withdrawal(&gcp_endpoint(replay), &credential, &target, SERVICE_ACCOUNT)
            .await?;
    if withdrawal.effect().is_some() {
        withdrawal.apply().await?;
    }
    Ok(withdrawal.summary())
}

/// What every Google withdrawal summary ends with: the grants above the key, left to the
/// operator with their commands.
fn granted_above_the_key() -> String {
    format!(
        "if it holds the role on key ring vault or project vault-prod, that is granted above the key: remove by hand with: gcloud kms keyrings remove-iam-policy-binding vault --location europe-west1 --project vault-prod --member serviceAccount:{SERVICE_ACCOUNT} --role roles/cloudkms.cryptoKeyEncrypterDecrypter, or gcloud projects remove-iam-policy-binding vault-prod --member serviceAccount:{SERVICE_ACCOUNT} --role roles/cloudkms.cryptoKeyEncrypterDecrypter (which may cut other keys too)"
    )
}

#[tokio::test]
async fn gcp_withdrawal_sets_the_policy_without_the_account_and_with_its_etag() {
    let replay = Replay::start(&FIXTURES, &["gcp-iam-policy", "gcp-set-iam-policy"]).await;
    let credential = GcpCredential::AccessToken(Secret::new(GCP_TOKEN));
    let target = gcp_target();
    let withdrawal = gcpckms::plan_withdrawal(
        &gcp_endpoint(&replay),
        &credential,
        &target,
        SERVICE_ACCOUNT,
    )
    .await
    .expect("read");
    assert!(!withdrawal.is_withdrawn());
    assert_eq!(
        withdrawal.effect().as_deref(),
        Some(
            format!(
                "remove serviceAccount:{SERVICE_ACCOUNT} from roles/cloudkms.cryptoKeyEncrypterDecrypter in the IAM policy of key {GCP_KEY}"
            )
            .as_str()
        )
    );
    withdrawal.apply().await.expect("set");
    assert_eq!(
        withdrawal.summary(),
        format!(
            "removed serviceAccount:{SERVICE_ACCOUNT} from roles/cloudkms.cryptoKeyEncrypterDecrypter in the IAM policy of key {GCP_KEY}; {}",
            granted_above_the_key()
        )
    );
    // The recorded setIamPolicy body is the policy as read, etag included, with the staging
    // account and the viewer binding kept.
    assert_eq!(
        replay.finish(),
        ["gcp-iam-policy#0", "gcp-set-iam-policy#0"]
    );
}

#[tokio::test]
async fn gcp_withdrawal_drops_the_emptied_binding_and_keeps_the_rest() {
    let replay = Replay::start(
        &FIXTURES,
        &["gcp-iam-policy-alone", "gcp-set-iam-policy-alone"],
    )
    .await;
    let summary = withdraw_gcp(&replay).await.expect("removed");
    assert!(
        summary.contains(&format!(
            "in the IAM policy of key {GCP_KEY}; it still holds roles/cloudkms.viewer on the key, which planx leaves; "
        )),
        "{summary}"
    );
    // The binding it held alone is gone, the conditional one keeps its other member and its
    // condition, and the policy its version 3.
    replay.finish();
}

#[tokio::test]
async fn gcp_account_not_on_the_key_is_done_and_names_the_grants_above() {
    let replay = Replay::start(&FIXTURES, &["gcp-iam-policy-other-members"]).await;
    let credential = GcpCredential::AccessToken(Secret::new(GCP_TOKEN));
    let target = gcp_target();
    let withdrawal = gcpckms::plan_withdrawal(
        &gcp_endpoint(&replay),
        &credential,
        &target,
        SERVICE_ACCOUNT,
    )
    .await
    .expect("read");
    assert!(withdrawal.is_withdrawn());
    assert_eq!(withdrawal.effect(), None);
    assert_eq!(
        withdrawal.summary(),
        format!(
            "serviceAccount:{SERVICE_ACCOUNT} not found on the key: the IAM policy of key {GCP_KEY} grants it no roles/cloudkms.cryptoKeyEncrypterDecrypter, nothing removed; it still holds roles/cloudkms.viewer on the key, which planx leaves; {}",
            granted_above_the_key()
        )
    );
    assert_eq!(replay.finish(), ["gcp-iam-policy-other-members#0"]);
}

#[tokio::test]
async fn gcp_policy_changed_meanwhile_is_transient() {
    let replay = Replay::start(
        &FIXTURES,
        &["gcp-iam-policy", "gcp-set-iam-policy-conflict"],
    )
    .await;
    let error = withdraw_gcp(&replay).await.expect_err("409");
    let message = message_without_secrets(&error);
    assert!(
        message.starts_with(&format!(
            "Cloud KMS setIamPolicy {GCP_KEY}: HTTP 409 ABORTED: There were concurrent policy changes."
        )),
        "{message}"
    );
    assert!(
        message.contains("retrying the step reads it again"),
        "{message}"
    );
    assert!(error.is_transient());
    let action: ActionError = error.into();
    assert!(action.transient);
    replay.finish();
}

#[tokio::test]
async fn gcp_forbidden_set_iam_policy_names_the_permission() {
    let replay = Replay::start(
        &FIXTURES,
        &["gcp-iam-policy", "gcp-set-iam-policy-forbidden"],
    )
    .await;
    let error = withdraw_gcp(&replay).await.expect_err("403");
    let message = message_without_secrets(&error);
    assert!(
        message.starts_with(&format!(
            "Cloud KMS setIamPolicy {GCP_KEY}: HTTP 403 PERMISSION_DENIED: Permission 'cloudkms.cryptoKeys.setIamPolicy' denied"
        )),
        "{message}"
    );
    assert!(
        message.ends_with(
            "; the operator running planx needs cloudkms.cryptoKeys.setIamPolicy (roles/cloudkms.admin) on the key"
        ),
        "{message}"
    );
    assert!(!error.is_transient());
    replay.finish();
}

#[tokio::test]
async fn gcp_withdrawal_needs_a_service_account_before_any_call() {
    let replay = Replay::start(&FIXTURES, &[]).await;
    let credential = GcpCredential::AccessToken(Secret::new(GCP_TOKEN));
    let target = gcp_target();
    for (identity, expected) in [
        (
            "",
            format!(
                "set `identity:` to the email of the service account the Vault pods use, to withdraw its access to key {GCP_KEY}"
            ),
        ),
        (
            "vault-seal",
            "`identity: vault-seal` is not a service account; set it to the email of the service account the Vault pods use (NAME@PROJECT.iam.gserviceaccount.com)".to_string(),
        ),
    ] {
        let error = gcpckms::plan_withdrawal(&gcp_endpoint(&replay), &credential, &target, identity)
            .await
            .err()
            .expect("no service account");
        assert_eq!(error.to_string(), expected);
    }
    assert!(replay.finish().is_empty());
}

/// `keys.disable` on the AWS key as the action runs it: the grants revoked, the summary.
async fn withdraw_aws(replay: &Replay) -> Result<String, AwsKmsError> {
    let (credentials, target) = (aws_credentials(), aws_target());
    let withdrawal =
        awskms::plan_withdrawal(&aws_endpoint(replay), &credentials, &target, ROLE).await?;
    for grant in withdrawal.grants() {
        withdrawal.revoke(grant).await?;
    }
    withdrawal.finish()
}

const GRANT_ENCRYPT: &str = "0c237476b39f8bc44e45212e08498fbe3151305030726c0590dd8d3e9f3d6a60";
const GRANT_REWRAP: &str = "91ad875e49b04a9d1f3bdeb84d821f9db6ea95e1098813f6d47f0c65fbe2a172";
/// The closing note when the key policy lets the account's IAM policies allow access.
const IAM_NOTE: &str = "; the key policy lets IAM policies in account 111122223333 allow access, which planx does not read: detach any IAM policy of arn:aws:iam::111122223333:role/vault-seal that allows kms:Decrypt on this key";

#[tokio::test]
async fn aws_withdrawal_revokes_every_grant_of_the_role() {
    let replay = Replay::start(
        &FIXTURES,
        &[
            "aws-describe-key",
            "aws-list-grants",
            "aws-key-policy-other-role",
            "aws-revoke-grant",
        ],
    )
    .await;
    let (credentials, target) = (aws_credentials(), aws_target());
    let withdrawal = awskms::plan_withdrawal(&aws_endpoint(&replay), &credentials, &target, ROLE)
        .await
        .expect("read");
    assert!(!withdrawal.is_withdrawn());
    let ids: Vec<&str> = withdrawal.grants().iter().map(|g| g.id.as_str()).collect();
    assert_eq!(ids, [GRANT_ENCRYPT, GRANT_REWRAP], "both pages");
    assert_eq!(
        withdrawal.revoke_effect(&withdrawal.grants()[0]),
        format!(
            "revoke grant {GRANT_ENCRYPT} (Encrypt, Decrypt, DescribeKey) of {ROLE} on key {KEY_ARN}"
        )
    );
    for grant in withdrawal.grants() {
        withdrawal.revoke(grant).await.expect("revoked");
    }
    assert_eq!(
        withdrawal.finish().expect("no statement names the role"),
        format!(
            "revoked the grants of {ROLE} on key {KEY_ARN}: {GRANT_ENCRYPT}, {GRANT_REWRAP}; the key policy names it in no statement{IAM_NOTE}"
        )
    );
    let requests = replay.finish_with_requests();
    let calls: Vec<&str> = requests.iter().map(|r| r.exchange.as_str()).collect();
    assert_eq!(
        calls,
        [
            "aws-describe-key#0",
            "aws-list-grants#0",
            "aws-list-grants#1",
            "aws-key-policy-other-role#0",
            "aws-revoke-grant#0",
            "aws-revoke-grant#1"
        ]
    );
    assert_signed_with_sigv4(&requests);
}

#[tokio::test]
async fn aws_key_policy_naming_the_role_is_left_with_the_commands() {
    let replay = Replay::start(
        &FIXTURES,
        &["aws-describe-key", "aws-list-grants-none", "aws-key-policy"],
    )
    .await;
    let error = withdraw_aws(&replay)
        .await
        .expect_err("a statement names it");
    let message = message_without_secrets(&error);
    assert_eq!(
        message,
        format!(
            "{ROLE} holds no grant on key {KEY_ARN}; the key policy still names {ROLE} in statement \"Allow use of the key\", and planx does not rewrite key policies (a wrong one can lock everyone out of the key): remove {ROLE} from it by hand with: aws kms get-key-policy --key-id {KEY_ARN} --policy-name default --region {REGION} --query Policy --output text > key-policy.json, edit key-policy.json, then aws kms put-key-policy --key-id {KEY_ARN} --policy-name default --policy file://key-policy.json --region {REGION}, and run the step again{IAM_NOTE}"
        )
    );
    assert!(!error.is_transient());
    replay.finish();
}

#[tokio::test]
async fn aws_nothing_left_to_withdraw_is_done() {
    let replay = Replay::start(
        &FIXTURES,
        &[
            "aws-describe-key",
            "aws-list-grants-none",
            "aws-key-policy-without-iam",
        ],
    )
    .await;
    let (credentials, target) = (aws_credentials(), aws_target());
    let withdrawal = awskms::plan_withdrawal(&aws_endpoint(&replay), &credentials, &target, ROLE)
        .await
        .expect("read");
    assert!(withdrawal.is_withdrawn());
    assert_eq!(
        withdrawal.finish().expect("done"),
        format!("{ROLE} holds no grant on key {KEY_ARN}; the key policy names it in no statement")
    );
    replay.finish();
}

#[tokio::test]
async fn aws_denied_revocation_names_kms_revoke_grant() {
    let replay = Replay::start(
        &FIXTURES,
        &[
            "aws-describe-key",
            "aws-list-grants",
            "aws-key-policy-other-role",
            "aws-revoke-grant-access-denied",
        ],
    )
    .await;
    let error = withdraw_aws(&replay).await.expect_err("denied");
    let message = message_without_secrets(&error);
    assert!(
        message.starts_with(&format!(
            "AWS KMS RevokeGrant with {KEY_ARN}: HTTP 400 AccessDeniedException: User: arn:aws:iam::111122223333:user/operator is not authorized to perform: kms:RevokeGrant"
        )),
        "{message}"
    );
    assert!(
        message.ends_with("; the operator running planx needs kms:RevokeGrant on the key"),
        "{message}"
    );
    assert!(!error.is_transient());
    replay.finish();
}

#[tokio::test]
async fn aws_withdrawal_needs_a_role_arn_before_any_call() {
    let replay = Replay::start(&FIXTURES, &[]).await;
    let (credentials, target) = (aws_credentials(), aws_target());
    for (identity, expected) in [
        (
            " ",
            format!(
                "set `identity:` to the ARN of the IAM role the Vault pods use, to withdraw its access to key {KEY_ALIAS}"
            ),
        ),
        (
            "vault-seal",
            "`identity: vault-seal` is not an IAM role ARN; set it to the ARN of the role the Vault pods use (arn:aws:iam::ACCOUNT:role/NAME)".to_string(),
        ),
    ] {
        let error = awskms::plan_withdrawal(&aws_endpoint(&replay), &credentials, &target, identity)
            .await
            .err()
            .expect("no role");
        assert_eq!(error.to_string(), expected);
    }
    assert!(replay.finish().is_empty());
}
