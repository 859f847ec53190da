//! S3 credentials from a web identity (EKS's IRSA): the store reads the token file, asks STS's
//! AssumeRoleWithWebIdentity for the role, and signs its requests with the answer — against a real
//! S3 server (s3s-fs on loopback) that knows only the keys STS handed out. AWS STS cannot run
//! here; a loopback endpoint answers the AssumeRoleWithWebIdentity call in STS's own XML, and
//! records what it was asked.

use std::sync::{Arc, Mutex};

use axum::routing::post;
use bytes::Bytes;
use suti_storage::{ObjectKey, ObjectStore, S3Credentials, S3Store};
use suti_testkit::{S3Server, unique};

/// A loopback STS that hands out `keys` for the token "good-token" and refuses any other.
async fn sts(keys: (String, String), asked: Arc<Mutex<Vec<String>>>) -> String {
    let app = axum::Router::new().route(
        "/",
        post(move |body: String| {
            let keys = keys.clone();
            let asked = asked.clone();
            async move {
                asked.lock().unwrap().push(body.clone());
                if !body.contains("WebIdentityToken=good-token") {
                    return (
                        axum::http::StatusCode::FORBIDDEN,
                        [("content-type", "text/xml")],
                        "<ErrorResponse><Error><Type>Sender</Type><Code>InvalidIdentityToken</Code>\
                         <Message>the token is not valid</Message></Error></ErrorResponse>"
                            .to_string(),
                    );
                }
                let (id, secret) = keys;
                (
                    axum::http::StatusCode::OK,
                    [("content-type", "text/xml")],
                    format!(
                        "<AssumeRoleWithWebIdentityResponse xmlns=\"https://sts.amazonaws.com/doc/2011-06-15/\">\
                         <AssumeRoleWithWebIdentityResult><Credentials><AccessKeyId>{id}</AccessKeyId>\
                         <SecretAccessKey>{secret}</SecretAccessKey><SessionToken>session-token</SessionToken>\
                         <Expiration>2099-01-01T00:00:00Z</Expiration></Credentials>\
                         <SubjectFromWebIdentityToken>system:serviceaccount:suti:suti</SubjectFromWebIdentityToken>\
                         </AssumeRoleWithWebIdentityResult><ResponseMetadata><RequestId>1</RequestId>\
                         </ResponseMetadata></AssumeRoleWithWebIdentityResponse>"
                    ),
                )
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("http://{addr}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_web_identity_token_becomes_the_s3_credentials_sts_hands_out() {
    let s3 = S3Server::start().await.unwrap();
    let bucket = unique("irsa");
    let with_keys = s3.options(&bucket);
    let S3Credentials::Keys {
        access_key_id,
        secret_access_key,
        ..
    } = with_keys.credentials.clone()
    else {
        unreachable!("the test server gives keys")
    };
    S3Store::connect(&with_keys, true).await.unwrap();

    let asked = Arc::new(Mutex::new(Vec::new()));
    let sts_endpoint = sts((access_key_id, secret_access_key), asked.clone()).await;
    let token = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(token.path(), "good-token\n").unwrap();
    let mut options = with_keys.clone();
    options.credentials = S3Credentials::WebIdentity {
        role_arn: "arn:aws:iam::123456789012:role/suti".into(),
        token_file: token.path().to_path_buf(),
        session_name: "suti-test".into(),
        sts_endpoint: Some(sts_endpoint),
    };

    let store = S3Store::connect(&options, false).await.unwrap();
    let key = ObjectKey::new("models/base/LATEST").unwrap();
    store.put(&key, Bytes::from_static(b"v1")).await.unwrap();
    assert_eq!(store.get(&key).await.unwrap(), Bytes::from_static(b"v1"));
    let request = asked
        .lock()
        .unwrap()
        .first()
        .cloned()
        .expect("STS was asked");
    for part in [
        "Action=AssumeRoleWithWebIdentity",
        "RoleArn=arn%3Aaws%3Aiam%3A%3A123456789012%3Arole%2Fsuti",
        "RoleSessionName=suti-test",
        "WebIdentityToken=good-token",
    ] {
        assert!(request.contains(part), "{part} missing from {request}");
    }

    // A token STS refuses: the store cannot act, and says why.
    std::fs::write(token.path(), "stolen-token").unwrap();
    let refused = S3Store::connect(&options, false).await.unwrap_err();
    assert_eq!(
        refused.kind,
        suti_storage::StorageErrorKind::Unauthorized,
        "{refused}"
    );
    assert!(
        refused.to_string().contains("cannot obtain S3 credentials")
            && refused
                .to_string()
                .contains("InvalidIdentityToken: the token is not valid"),
        "{refused}"
    );
}
