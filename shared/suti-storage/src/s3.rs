//! S3 backend (aws-sdk-s3): any S3-compatible server — AWS, MinIO, s3s-fs — with a configurable
//! endpoint, region and path-style addressing, and credentials from the environment.
//!
//! A single `PutObject` becomes visible atomically, so readers never see half an object.

use std::time::Duration;

use async_trait::async_trait;
use aws_credential_types::Credentials;
use aws_sdk_s3::config::retry::RetryConfig;
use aws_sdk_s3::config::timeout::TimeoutConfig;
use aws_sdk_s3::config::{BehaviorVersion, Region};
use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_s3::primitives::ByteStream;
use aws_smithy_http_client::tls;
use aws_smithy_runtime_api::client::orchestrator::HttpResponse;
use bytes::Bytes;

use crate::{ObjectKey, ObjectMeta, ObjectStore, StorageError, StorageErrorKind, StorageResult};

/// How to reach an S3-compatible server.
#[derive(Clone)]
pub struct S3Options {
    /// Bucket holding every artifact.
    pub bucket: String,
    /// Endpoint URL (`http://127.0.0.1:9000`); `None` for AWS's own.
    pub endpoint: Option<String>,
    /// Region (`us-east-1` for most S3-compatible servers).
    pub region: String,
    /// Path-style addressing (`endpoint/bucket/key`), which MinIO and s3s-fs need.
    pub path_style: bool,
    /// Access key id.
    pub access_key_id: String,
    /// Secret access key.
    pub secret_access_key: String,
    /// Session token, for temporary credentials.
    pub session_token: Option<String>,
    /// Limit on one operation, retries included.
    pub operation_timeout: Duration,
    /// Limit on opening a connection.
    pub connect_timeout: Duration,
    /// Attempts the SDK makes for a transient failure before reporting it.
    pub max_attempts: u32,
}

impl std::fmt::Debug for S3Options {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Options")
            .field("bucket", &self.bucket)
            .field("endpoint", &self.endpoint)
            .field("region", &self.region)
            .field("path_style", &self.path_style)
            .field("access_key_id", &self.access_key_id)
            .field("secret_access_key", &"[redacted]")
            .finish_non_exhaustive()
    }
}

impl S3Options {
    /// Options for `bucket` with credentials from `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY` and
    /// `AWS_SESSION_TOKEN`.
    pub fn from_env(bucket: impl Into<String>) -> StorageResult<Self> {
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
        let (Some(access_key_id), Some(secret_access_key)) =
            (var("AWS_ACCESS_KEY_ID"), var("AWS_SECRET_ACCESS_KEY"))
        else {
            return Err(StorageError::new(
                StorageErrorKind::Unauthorized,
                "no S3 credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY",
            ));
        };
        Ok(Self {
            bucket: bucket.into(),
            endpoint: var("AWS_ENDPOINT_URL"),
            region: var("AWS_REGION").unwrap_or_else(|| "us-east-1".into()),
            path_style: false,
            access_key_id,
            secret_access_key,
            session_token: var("AWS_SESSION_TOKEN"),
            operation_timeout: Duration::from_secs(120),
            connect_timeout: Duration::from_secs(5),
            max_attempts: 3,
        })
    }
}

/// An S3 bucket.
#[derive(Debug, Clone)]
pub struct S3Store {
    client: aws_sdk_s3::Client,
    bucket: String,
}

/// Maps an SDK failure to a storage error kind, keeping the server's code and message.
fn sdk_error<E>(op: &str, target: &str, err: SdkError<E, HttpResponse>) -> StorageError
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    let (kind, detail) = match &err {
        SdkError::TimeoutError(_) => (StorageErrorKind::Timeout, "timed out".to_string()),
        SdkError::DispatchFailure(failure) => {
            let kind = if failure.is_timeout() {
                StorageErrorKind::Timeout
            } else {
                StorageErrorKind::Unavailable
            };
            let detail = format!(
                "cannot reach the server: {}",
                aws_smithy_types::error::display::DisplayErrorContext(&err)
            );
            (kind, detail)
        }
        SdkError::ResponseError(_) => (
            StorageErrorKind::Unavailable,
            "unreadable response from the server".to_string(),
        ),
        SdkError::ServiceError(service) => {
            let status = service.raw().status().as_u16();
            let code = service.err().code().unwrap_or("");
            let message = service.err().message().unwrap_or("");
            let kind = match (status, code) {
                (_, "NoSuchBucket") => StorageErrorKind::NoSuchBucket,
                (404, _) | (_, "NoSuchKey") => StorageErrorKind::NotFound,
                (401 | 403, _)
                | (_, "InvalidAccessKeyId" | "SignatureDoesNotMatch" | "AccessDenied") => {
                    StorageErrorKind::Unauthorized
                }
                (408, _) | (_, "RequestTimeout") => StorageErrorKind::Timeout,
                (429 | 500..=599, _) | (_, "SlowDown") => StorageErrorKind::Unavailable,
                _ => StorageErrorKind::Rejected,
            };
            let mut detail = format!("HTTP {status}");
            if !code.is_empty() {
                detail.push_str(&format!(" {code}"));
            }
            if !message.is_empty() {
                detail.push_str(&format!(": {message}"));
            }
            if kind == StorageErrorKind::Unauthorized {
                detail.push_str(
                    " (the server refused the credentials: check AWS_ACCESS_KEY_ID and \
                     AWS_SECRET_ACCESS_KEY and the bucket policy)",
                );
            }
            (kind, detail)
        }
        _ => (
            StorageErrorKind::Rejected,
            aws_smithy_types::error::display::DisplayErrorContext(&err).to_string(),
        ),
    };
    StorageError::new(kind, format!("{op} {target}: {detail}"))
}

impl S3Store {
    /// Builds a client for `options` (no request is made).
    pub fn new(options: &S3Options) -> Self {
        let http = aws_smithy_http_client::Builder::new()
            .tls_provider(tls::Provider::Rustls(
                tls::rustls_provider::CryptoMode::Ring,
            ))
            .build_https();
        let credentials = Credentials::new(
            options.access_key_id.clone(),
            options.secret_access_key.clone(),
            options.session_token.clone(),
            None,
            "suti-config",
        );
        let mut config = aws_sdk_s3::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new(options.region.clone()))
            .credentials_provider(credentials)
            .http_client(http)
            .force_path_style(options.path_style)
            .timeout_config(
                TimeoutConfig::builder()
                    .operation_timeout(options.operation_timeout)
                    .connect_timeout(options.connect_timeout)
                    .build(),
            )
            .retry_config(RetryConfig::standard().with_max_attempts(options.max_attempts.max(1)));
        if let Some(endpoint) = &options.endpoint {
            config = config.endpoint_url(endpoint);
        }
        Self {
            client: aws_sdk_s3::Client::from_conf(config.build()),
            bucket: options.bucket.clone(),
        }
    }

    /// Builds a client and checks the bucket, creating it if `create_bucket` and it is missing.
    pub async fn connect(options: &S3Options, create_bucket: bool) -> StorageResult<Self> {
        let store = Self::new(options);
        match store.ping().await {
            Ok(()) => Ok(store),
            Err(e) if e.kind == StorageErrorKind::NoSuchBucket && create_bucket => {
                store.create_bucket().await?;
                Ok(store)
            }
            Err(e) => Err(e),
        }
    }

    /// Creates the bucket (succeeds if this account already owns it).
    pub async fn create_bucket(&self) -> StorageResult<()> {
        match self
            .client
            .create_bucket()
            .bucket(&self.bucket)
            .send()
            .await
        {
            Ok(_) => Ok(()),
            Err(SdkError::ServiceError(e))
                if matches!(
                    e.err().code(),
                    Some("BucketAlreadyOwnedByYou" | "BucketAlreadyExists")
                ) =>
            {
                Ok(())
            }
            Err(e) => Err(sdk_error("create bucket", &self.bucket, e)),
        }
    }

    /// The bucket name.
    pub fn bucket(&self) -> &str {
        &self.bucket
    }
}

#[async_trait]
impl ObjectStore for S3Store {
    fn backend(&self) -> &'static str {
        "s3"
    }

    async fn put(&self, key: &ObjectKey, body: Bytes) -> StorageResult<()> {
        self.client
            .put_object()
            .bucket(&self.bucket)
            .key(key.as_str())
            .body(ByteStream::from(body))
            .send()
            .await
            .map(drop)
            .map_err(|e| sdk_error("put", key.as_str(), e))
    }

    async fn get(&self, key: &ObjectKey) -> StorageResult<Bytes> {
        let output = self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(key.as_str())
            .send()
            .await
            .map_err(|e| sdk_error("get", key.as_str(), e))?;
        let body = output.body.collect().await.map_err(|e| {
            StorageError::new(
                StorageErrorKind::Unavailable,
                format!("get {key}: body interrupted: {e}"),
            )
        })?;
        Ok(body.into_bytes())
    }

    async fn head(&self, key: &ObjectKey) -> StorageResult<Option<ObjectMeta>> {
        match self
            .client
            .head_object()
            .bucket(&self.bucket)
            .key(key.as_str())
            .send()
            .await
        {
            Ok(output) => Ok(Some(ObjectMeta {
                key: key.clone(),
                size: output.content_length().unwrap_or(0).max(0) as u64,
            })),
            Err(e) => {
                let err = sdk_error("head", key.as_str(), e);
                if err.kind == StorageErrorKind::NotFound {
                    Ok(None)
                } else {
                    Err(err)
                }
            }
        }
    }

    async fn delete(&self, key: &ObjectKey) -> StorageResult<()> {
        match self
            .client
            .delete_object()
            .bucket(&self.bucket)
            .key(key.as_str())
            .send()
            .await
        {
            Ok(_) => Ok(()),
            Err(e) => {
                let err = sdk_error("delete", key.as_str(), e);
                if err.kind == StorageErrorKind::NotFound {
                    Ok(())
                } else {
                    Err(err)
                }
            }
        }
    }

    async fn list(&self, prefix: &str) -> StorageResult<Vec<ObjectMeta>> {
        let mut out = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let page = self
                .client
                .list_objects_v2()
                .bucket(&self.bucket)
                .prefix(prefix)
                .set_continuation_token(token.take())
                .send()
                .await
                .map_err(|e| sdk_error("list", prefix, e))?;
            for object in page.contents() {
                if let Some(key) = object.key().and_then(|k| ObjectKey::new(k).ok()) {
                    out.push(ObjectMeta {
                        key,
                        size: object.size().unwrap_or(0).max(0) as u64,
                    });
                }
            }
            match page.next_continuation_token() {
                Some(next) if page.is_truncated().unwrap_or(false) => {
                    token = Some(next.to_string())
                }
                _ => break,
            }
        }
        out.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(out)
    }

    async fn ping(&self) -> StorageResult<()> {
        self.client
            .head_bucket()
            .bucket(&self.bucket)
            .send()
            .await
            .map(drop)
            .map_err(|e| {
                let err = sdk_error("head bucket", &self.bucket, e);
                // HeadBucket has no body, so a missing bucket shows only as a 404.
                if err.kind == StorageErrorKind::NotFound {
                    StorageError::new(StorageErrorKind::NoSuchBucket, err.message)
                } else {
                    err
                }
            })
    }
}
