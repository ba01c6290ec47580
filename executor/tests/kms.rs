//! `preflight.key-access` and `keys.disable` on AWS KMS and Google Cloud KMS against recorded
//! exchanges: the replay
//! server of `tests/replay` answers only the requests recorded in `tests/kms/*.json` (`aws-*`
//! shaped after the AWS KMS API reference, `gcp-*` after the Cloud KMS REST reference, each
//! file naming its page in `source`), checks the call each AWS request names in `X-Amz-Target`
//! and the bearer token of each Google request, hands the plaintext an encrypt sent back from
//! the decrypt, and fails the test on any other request or any recorded request left unmade.
//! The SigV4 signer is checked against AWS's published examples.

use std::path::{Path, PathBuf};
use std::sync::LazyLock;

use base64::Engine as _;
use planx::keyservices::awskms::{
    self, AwsCredentials, AwsKmsError, KmsEndpoint, KmsKeyTarget, SigningRequest,
    sigv4_authorization,
};
use planx::keyservices::gcpckms::{
    self, CloudKmsEndpoint, CryptoKeyTarget, GcpCredential, GcpKmsError,
};
use planx::secrets::Secret;

mod common;
mod replay;
use common::{scratch_dir, write_script};
use replay::cases::{self, contains, ends_with, fails, is, passes, starts_with};
use replay::recorded::kms::{
    ACCESS_KEY_ID, GCP_KEY, GCP_TOKEN, KEY_ALIAS, KEY_ARN, PLANTED, REGION, ROLE,
    SECRET_ACCESS_KEY, SERVICE_ACCOUNT, SESSION_TOKEN, TARGETS_YAML, aws_credentials, aws_endpoint,
    aws_target, environment, gcp_endpoint, gcp_target,
};
use replay::recorded::{KMS as FIXTURES, plan_text};
use replay::{Answered, Replay};

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
/// The recordings of an AWS check up to its key policy, and of a Google check up to its IAM
/// policy: the key described, the probe encrypted and decrypted.
const AWS_ROUND_TRIP: [&str; 3] = ["aws-describe-key", "aws-encrypt", "aws-decrypt"];
const GCP_ROUND_TRIP: [&str; 3] = ["gcp-crypto-key", "gcp-encrypt", "gcp-decrypt"];

/// The recordings `first`, then `rest`.
fn then(first: &[&'static str], rest: &[&'static str]) -> Vec<&'static str> {
    [first, rest].concat()
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

/// The operator's token for Cloud KMS, as `GOOGLE_OAUTH_ACCESS_TOKEN` gives it.
fn gcp_token() -> GcpCredential {
    GcpCredential::AccessToken(Secret::new(GCP_TOKEN))
}

async fn check_gcp(replay: &Replay, identity: &str) -> Result<String, GcpKmsError> {
    gcpckms::check_key_access(&gcp_endpoint(replay), &gcp_token(), &gcp_target(), identity).await
}

/// The error's text and Debug, checked to hold no secret.
fn message_without_secrets(error: &(impl std::fmt::Display + std::fmt::Debug)) -> String {
    cases::message_without(&PLANTED, error)
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

/// A whole check with `identity` on the recordings `files`, which passes: its summary, the
/// plaintext the encrypt sent (decoded, as the recording kept it under `probe`), and the requests
/// as they arrived.
async fn passing_check<E: std::fmt::Debug>(
    files: &[&str],
    check: impl AsyncFn(&Replay, &str) -> Result<String, E>,
    identity: &str,
    probe: &str,
) -> (String, Vec<u8>, Vec<Answered>) {
    let replay = Replay::start(&FIXTURES, files).await;
    let summary = check(&replay, identity).await.expect("access");
    let probe = probe_sent(&replay, probe);
    (summary, probe, replay.finish_with_requests())
}

/// The recorded exchanges that answered `requests`, in order.
fn exchanges(requests: &[Answered]) -> Vec<&str> {
    requests.iter().map(|r| r.exchange.as_str()).collect()
}

#[tokio::test]
async fn aws_key_passes_with_signed_calls_in_order() {
    let files = then(&AWS_ROUND_TRIP, &["aws-key-policy"]);
    let (summary, probe, requests) = passing_check(&files, check_aws, ROLE, "aws-plaintext").await;
    assert_eq!(
        summary,
        format!(
            "key {KEY_ARN} enabled (SYMMETRIC_DEFAULT, ENCRYPT_DECRYPT); encrypt and decrypt succeeded as the operator, which proves the key works, not that the Vault pods' role may use it; the key policy allows {ROLE} kms:Encrypt, kms:Decrypt, kms:DescribeKey"
        )
    );
    assert_eq!(probe.len(), 32);
    assert_eq!(exchanges(&requests), AWS_CALLS);
    assert_signed_with_sigv4(&requests);
    for request in &requests {
        assert_eq!(
            (request.method.as_str(), request.target.as_str()),
            ("POST", "/")
        );
        assert!(!request.body.contains(SECRET_ACCESS_KEY));
    }
}

/// The AWS check with the operator's credentials, a case per recorded situation, named for what
/// it shows.
#[tokio::test]
async fn aws_key_access_check_cases() {
    let mut table = vec![
        passes(
            "aws_key_policy_without_the_role_warns_but_passes",
            &then(&AWS_ROUND_TRIP, &["aws-key-policy-other-role"]),
            ROLE,
            [ends_with(format!(
                "; warning: the key policy does not allow {ROLE} kms:Encrypt, kms:Decrypt, kms:DescribeKey; an IAM policy on it or a grant must allow them (the key policy lets IAM policies in account 111122223333 allow access)"
            ))],
        ),
        passes(
            "aws_key_policy_closed_to_iam_says_only_a_grant_can_allow",
            &then(&AWS_ROUND_TRIP, &["aws-key-policy-without-iam"]),
            ROLE,
            [ends_with(format!(
                "; warning: the key policy does not allow {ROLE} kms:Encrypt, kms:Decrypt, kms:DescribeKey; only a grant can allow them, since the key policy does not let IAM policies in account 111122223333 allow access; add {ROLE} to the key policy"
            ))],
        ),
        passes(
            "aws_without_identity_skips_the_key_policy",
            &AWS_ROUND_TRIP,
            " ",
            [ends_with(
                "; set `identity:` to the ARN of the role the Vault pods use to check the key policy too",
            )],
        )
        .calls(&AWS_CALLS[..3]),
        fails(
            "aws_disabled_key_fails_before_encrypting",
            &["aws-describe-key-disabled"],
            ROLE,
            [is(format!(
                "key {KEY_ARN} is disabled: the seal cannot encrypt or decrypt with it; enable it with: aws kms enable-key --key-id {KEY_ARN} --region {REGION}"
            ))],
        )
        .calls(&["aws-describe-key-disabled#0"]),
        fails(
            "aws_access_denied_on_decrypt_names_kms_decrypt",
            &["aws-describe-key", "aws-encrypt", "aws-decrypt-access-denied"],
            ROLE,
            [
                starts_with(format!(
                    "AWS KMS Decrypt with {KEY_ARN}: HTTP 400 AccessDeniedException: User: arn:aws:iam::111122223333:user/operator is not authorized to perform: kms:Decrypt"
                )),
                ends_with("; the operator running planx needs kms:Decrypt on the key"),
            ],
        ),
        fails(
            "aws_throttling_is_transient",
            &["aws-describe-key-throttled"],
            ROLE,
            [starts_with(format!(
                "AWS KMS DescribeKey with {KEY_ALIAS}: HTTP 400 ThrottlingException: You have exceeded the rate"
            ))],
        )
        .transient(),
        fails(
            "aws_missing_key_names_key_and_region",
            &["aws-describe-key-not-found"],
            ROLE,
            [starts_with(format!(
                "AWS KMS has no key {KEY_ALIAS} in region {REGION} (NotFoundException: Alias"
            ))],
        ),
        fails(
            "aws_decrypt_returning_other_bytes_fails",
            &["aws-describe-key", "aws-encrypt", "aws-decrypt-other-plaintext"],
            ROLE,
            [is(format!(
                "AWS KMS Decrypt with {KEY_ARN}: unexpected answer: the plaintext that came back is not the one encrypted"
            ))],
        ),
    ];
    let not_roles = [
        "vault-seal",
        "arn:aws:sts::111122223333:assumed-role/vault-seal/pod",
        "arn:aws:iam::1111:role/vault-seal",
    ];
    table.extend(not_roles.map(|identity| {
        fails(
            format!("aws_identity_is_checked_before_any_call: {identity}"),
            &[],
            identity,
            [starts_with(format!(
                "`identity: {identity}` is not an IAM role ARN"
            ))],
        )
        .calls(&[])
    }));
    cases::run(&FIXTURES, &PLANTED, table, check_aws).await;
}

#[tokio::test]
async fn aws_region_is_checked_before_any_call() {
    let replay = Replay::start(&FIXTURES, &[]).await;
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
    let credentials = |pairs: &[(&str, &str)]| AwsCredentials::from_lookup(common::lookup(pairs));
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
    assert_eq!(token, gcp_token());
    assert!(!format!("{token:?}").contains(GCP_TOKEN));
    let gcloud = GcpCredential::Gcloud {
        program: PathBuf::from("gcloud"),
    };
    assert_eq!(GcpCredential::from_lookup(|_| None), gcloud);
    assert_eq!(GcpCredential::from_lookup(|_| Some(String::new())), gcloud);
}

#[tokio::test]
async fn gcp_key_passes_with_its_calls_in_order() {
    let files = then(&GCP_ROUND_TRIP, &["gcp-iam-policy"]);
    let (summary, probe, requests) =
        passing_check(&files, check_gcp, SERVICE_ACCOUNT, "gcp-plaintext").await;
    assert_eq!(
        summary,
        format!(
            "key {GCP_KEY} (ENCRYPT_DECRYPT) primary version 3 enabled; encrypt and decrypt succeeded as the operator, which proves the key works, not that the Vault pods' service account may use it; serviceAccount:{SERVICE_ACCOUNT} holds roles/cloudkms.cryptoKeyEncrypterDecrypter on the key"
        )
    );
    assert_eq!(probe.len(), 32);
    assert_eq!(exchanges(&requests), GCP_CALLS);
}

/// The Google check with the operator's token, a case per recorded situation, named for what it
/// shows.
#[tokio::test]
async fn gcp_key_access_check_cases() {
    let mut table = vec![
        passes(
            "gcp_policy_without_the_service_account_is_a_note",
            &then(&GCP_ROUND_TRIP, &["gcp-iam-policy-other-members"]),
            format!("serviceAccount:{SERVICE_ACCOUNT}"),
            [ends_with(format!(
                "; note: serviceAccount:{SERVICE_ACCOUNT} does not hold roles/cloudkms.cryptoKeyEncrypterDecrypter on the key itself; it may hold it on the key ring or the project, or grant it with: gcloud kms keys add-iam-policy-binding vault-seal-new --keyring vault --location europe-west1 --project vault-prod --member serviceAccount:{SERVICE_ACCOUNT} --role roles/cloudkms.cryptoKeyEncrypterDecrypter"
            ))],
        ),
        passes(
            "gcp_without_identity_skips_the_iam_policy",
            &GCP_ROUND_TRIP,
            "",
            [ends_with("to check the key's IAM policy too")],
        )
        .calls(&GCP_CALLS[..3]),
        fails(
            "gcp_disabled_primary_version_fails_before_encrypting",
            &["gcp-crypto-key-version-disabled"],
            SERVICE_ACCOUNT,
            [is(format!(
                "primary version 3 of key {GCP_KEY} is disabled: the seal cannot encrypt or decrypt with it; enable it with: gcloud kms keys versions enable 3 --key vault-seal-new --keyring vault --location europe-west1 --project vault-prod"
            ))],
        )
        .calls(&["gcp-crypto-key-version-disabled#0"]),
        fails(
            "gcp_permission_denied_on_encrypt_names_the_permission",
            &["gcp-crypto-key", "gcp-encrypt-permission-denied"],
            SERVICE_ACCOUNT,
            [
                starts_with(format!(
                    "Cloud KMS encrypt {GCP_KEY}: HTTP 403 PERMISSION_DENIED: Permission 'cloudkms.cryptoKeyVersions.useToEncrypt' denied"
                )),
                ends_with(
                    "; the operator running planx needs cloudkms.cryptoKeyVersions.useToEncrypt (roles/cloudkms.cryptoKeyEncrypterDecrypter) on the key",
                ),
            ],
        ),
        fails(
            "gcp_missing_key_names_its_path",
            &["gcp-crypto-key-not-found"],
            SERVICE_ACCOUNT,
            [starts_with(format!(
                "Cloud KMS has no key {GCP_KEY} (NOT_FOUND: CryptoKey {GCP_KEY} not found.)"
            ))],
        ),
        fails(
            "gcp_forbidden_iam_policy_names_get_iam_policy",
            &then(&GCP_ROUND_TRIP, &["gcp-iam-policy-forbidden"]),
            SERVICE_ACCOUNT,
            [
                starts_with(format!(
                    "Cloud KMS getIamPolicy {GCP_KEY}: HTTP 403 PERMISSION_DENIED"
                )),
                contains("the operator running planx needs cloudkms.cryptoKeys.getIamPolicy"),
            ],
        ),
        fails(
            "gcp_throttling_is_transient",
            &["gcp-crypto-key-throttled"],
            SERVICE_ACCOUNT,
            [contains("HTTP 429 RESOURCE_EXHAUSTED: Quota exceeded")],
        )
        .transient(),
        fails(
            "gcp_decrypt_returning_other_bytes_fails",
            &["gcp-crypto-key", "gcp-encrypt", "gcp-decrypt-other-plaintext"],
            SERVICE_ACCOUNT,
            [is(format!(
                "Cloud KMS decrypt with {GCP_KEY}: unexpected answer: the plaintext that came back is not the one encrypted"
            ))],
        ),
    ];
    let not_service_accounts = ["vault-seal", "user:ops@example.com", "vault@example.com"];
    table.extend(not_service_accounts.map(|identity| {
        fails(
            format!("gcp_identity_is_checked_before_any_call: {identity}"),
            &[],
            identity,
            [starts_with(format!(
                "`identity: {identity}` is not a service account"
            ))],
        )
        .calls(&[])
    }));
    cases::run(&FIXTURES, &PLANTED, table, check_gcp).await;
}

#[tokio::test]
async fn gcp_token_comes_from_gcloud_when_not_given() {
    let dir = scratch_dir("kms-gcloud");
    let signed_in = dir.join("gcloud");
    let signed_out = dir.join("gcloud-signed-out");
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

    let replay = Replay::start(&FIXTURES, &then(&GCP_ROUND_TRIP, &["gcp-iam-policy"])).await;
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

/// One `preflight.key-access` step on an awskms target and one on a gcpckms target.
fn key_access_plan() -> String {
    plan_text(
        "kms-key-access",
        TARGETS_YAML,
        "preflight.key-access",
        &[
            ("aws-key-access", "aws_keys", ROLE),
            ("gcp-key-access", "gcp_keys", SERVICE_ACCOUNT),
        ],
    )
}

#[test]
fn targets_from_the_compiled_attributes() {
    let plan = common::compile("kms-key-access", key_access_plan());
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

/// `planx apply` on [`key_access_plan`], in `dir`, with `env` and nothing else of the caller's cloud
/// environment; a kubeconfig without clusters, since the plan has none.
async fn planx_apply(dir: &Path, env: &[(&str, String)]) -> std::process::Output {
    std::fs::write(dir.join("kms-key-access.yaml"), key_access_plan()).expect("plan");
    common::planx_without_clusters(dir, &["apply", "kms-key-access.yaml", "--yes"], env).await
}

#[tokio::test]
async fn the_action_checks_both_kinds_with_credentials_from_the_environment() {
    let replay = Replay::start(
        &FIXTURES,
        &[
            &AWS_ROUND_TRIP[..],
            &["aws-key-policy"],
            &GCP_ROUND_TRIP,
            &["gcp-iam-policy"],
        ]
        .concat(),
    )
    .await;
    let dir = scratch_dir("kms-action");
    let output = planx_apply(&dir, &environment(&replay)).await;
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
    let dir = scratch_dir("kms-action-without-credentials");
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

/// The withdrawal of the Google key from the service account `identity`, found (its IAM policy
/// read) and not yet made.
async fn plan_gcp(
    replay: &Replay,
    identity: &str,
) -> Result<gcpckms::KeyAccessWithdrawal<'static>, GcpKmsError> {
    static TARGET: LazyLock<CryptoKeyTarget> = LazyLock::new(gcp_target);
    gcpckms::plan_withdrawal(&gcp_endpoint(replay), &gcp_token(), &TARGET, identity).await
}

/// `keys.disable` on the Google key as the action runs it: the policy read, set without the
/// account `identity` when it held the role, the summary.
async fn withdraw_gcp(replay: &Replay, identity: &str) -> Result<String, GcpKmsError> {
    let withdrawal = plan_gcp(replay, identity).await?;
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
    let withdrawal = plan_gcp(&replay, SERVICE_ACCOUNT).await.expect("read");
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
async fn gcp_account_not_on_the_key_is_done_and_names_the_grants_above() {
    let replay = Replay::start(&FIXTURES, &["gcp-iam-policy-other-members"]).await;
    let withdrawal = plan_gcp(&replay, SERVICE_ACCOUNT).await.expect("read");
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

/// The Google withdrawal as the action runs it, a case per recorded situation, named for what it
/// shows.
#[tokio::test]
async fn gcp_withdrawal_cases() {
    let table = vec![
        // The binding it held alone is gone, the conditional one keeps its other member and its
        // condition, and the policy its version 3.
        passes(
            "gcp_withdrawal_drops_the_emptied_binding_and_keeps_the_rest",
            &["gcp-iam-policy-alone", "gcp-set-iam-policy-alone"],
            SERVICE_ACCOUNT,
            [contains(format!(
                "in the IAM policy of key {GCP_KEY}; it still holds roles/cloudkms.viewer on the key, which planx leaves; "
            ))],
        ),
        fails(
            "gcp_policy_changed_meanwhile_is_transient",
            &["gcp-iam-policy", "gcp-set-iam-policy-conflict"],
            SERVICE_ACCOUNT,
            [
                starts_with(format!(
                    "Cloud KMS setIamPolicy {GCP_KEY}: HTTP 409 ABORTED: There were concurrent policy changes."
                )),
                contains("retrying the step reads it again"),
            ],
        )
        .transient(),
        fails(
            "gcp_forbidden_set_iam_policy_names_the_permission",
            &["gcp-iam-policy", "gcp-set-iam-policy-forbidden"],
            SERVICE_ACCOUNT,
            [
                starts_with(format!(
                    "Cloud KMS setIamPolicy {GCP_KEY}: HTTP 403 PERMISSION_DENIED: Permission 'cloudkms.cryptoKeys.setIamPolicy' denied"
                )),
                ends_with(
                    "; the operator running planx needs cloudkms.cryptoKeys.setIamPolicy (roles/cloudkms.admin) on the key",
                ),
            ],
        ),
        fails(
            "gcp_withdrawal_needs_a_service_account_before_any_call (none given)",
            &[],
            "",
            [is(format!(
                "set `identity:` to the email of the service account the Vault pods use, to withdraw its access to key {GCP_KEY}"
            ))],
        )
        .calls(&[]),
        fails(
            "gcp_withdrawal_needs_a_service_account_before_any_call (a name)",
            &[],
            "vault-seal",
            [is(
                "`identity: vault-seal` is not a service account; set it to the email of the service account the Vault pods use (NAME@PROJECT.iam.gserviceaccount.com)",
            )],
        )
        .calls(&[]),
    ];
    cases::run(&FIXTURES, &PLANTED, table, withdraw_gcp).await;
}

/// The withdrawal of the AWS key from the role `identity`, found (its grants listed, its key
/// policy read) and not yet made.
async fn plan_aws(
    replay: &Replay,
    identity: &str,
) -> Result<awskms::KeyAccessWithdrawal<'static>, AwsKmsError> {
    static CREDENTIALS: LazyLock<AwsCredentials> = LazyLock::new(aws_credentials);
    static TARGET: LazyLock<KmsKeyTarget> = LazyLock::new(aws_target);
    awskms::plan_withdrawal(&aws_endpoint(replay), &CREDENTIALS, &TARGET, identity).await
}

/// `keys.disable` on the AWS key as the action runs it for the role `identity`: the grants
/// revoked, the summary.
async fn withdraw_aws(replay: &Replay, identity: &str) -> Result<String, AwsKmsError> {
    let withdrawal = plan_aws(replay, identity).await?;
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
    let withdrawal = plan_aws(&replay, ROLE).await.expect("read");
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
    assert_eq!(
        exchanges(&requests),
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
    let withdrawal = plan_aws(&replay, ROLE).await.expect("read");
    assert!(withdrawal.is_withdrawn());
    assert_eq!(
        withdrawal.finish().expect("done"),
        format!("{ROLE} holds no grant on key {KEY_ARN}; the key policy names it in no statement")
    );
    replay.finish();
}

/// The AWS withdrawal as the action runs it, a case per recorded situation, named for what it
/// shows.
#[tokio::test]
async fn aws_withdrawal_cases() {
    let table = vec![
        fails(
            "aws_key_policy_naming_the_role_is_left_with_the_commands",
            &["aws-describe-key", "aws-list-grants-none", "aws-key-policy"],
            ROLE,
            [is(format!(
                "{ROLE} holds no grant on key {KEY_ARN}; the key policy still names {ROLE} in statement \"Allow use of the key\", and planx does not rewrite key policies (a wrong one can lock everyone out of the key): remove {ROLE} from it by hand with: aws kms get-key-policy --key-id {KEY_ARN} --policy-name default --region {REGION} --query Policy --output text > key-policy.json, edit key-policy.json, then aws kms put-key-policy --key-id {KEY_ARN} --policy-name default --policy file://key-policy.json --region {REGION}, and run the step again{IAM_NOTE}"
            ))],
        ),
        fails(
            "aws_denied_revocation_names_kms_revoke_grant",
            &[
                "aws-describe-key",
                "aws-list-grants",
                "aws-key-policy-other-role",
                "aws-revoke-grant-access-denied",
            ],
            ROLE,
            [
                starts_with(format!(
                    "AWS KMS RevokeGrant with {KEY_ARN}: HTTP 400 AccessDeniedException: User: arn:aws:iam::111122223333:user/operator is not authorized to perform: kms:RevokeGrant"
                )),
                ends_with("; the operator running planx needs kms:RevokeGrant on the key"),
            ],
        ),
        fails(
            "aws_withdrawal_needs_a_role_arn_before_any_call (none given)",
            &[],
            " ",
            [is(format!(
                "set `identity:` to the ARN of the IAM role the Vault pods use, to withdraw its access to key {KEY_ALIAS}"
            ))],
        )
        .calls(&[]),
        fails(
            "aws_withdrawal_needs_a_role_arn_before_any_call (a name)",
            &[],
            "vault-seal",
            [is(
                "`identity: vault-seal` is not an IAM role ARN; set it to the ARN of the role the Vault pods use (arn:aws:iam::ACCOUNT:role/NAME)",
            )],
        )
        .calls(&[]),
    ];
    cases::run(&FIXTURES, &PLANTED, table, withdraw_aws).await;
}
