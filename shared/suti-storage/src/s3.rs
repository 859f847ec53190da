//! S3 backend (aws-sdk-s3): any S3-compatible server — AWS, MinIO, s3s-fs — with a configurable
//! endpoint, region and path-style addressing, and credentials from the environment: keys, or a
//! role assumed with a web identity token (IRSA), refreshed before they expire.
//!
//! A single `PutObject` becomes visible atomically, so readers never see half an object.

use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use aws_credential_types::Credentials;
use aws_credential_types::provider::{self, ProvideCredentials, SharedCredentialsProvider};
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
    /// Where the credentials come from.
    pub credentials: S3Credentials,
    /// Limit on one operation, retries included.
    pub operation_timeout: Duration,
    /// Limit on opening a connection.
    pub connect_timeout: Duration,
    /// Attempts the SDK makes for a transient failure before reporting it.
    pub max_attempts: u32,
}

/// Where the S3 client's credentials come from.
#[derive(Clone)]
pub enum S3Credentials {
    /// Keys given directly (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`).
    Keys {
        /// Access key id.
        access_key_id: String,
        /// Secret access key.
        secret_access_key: String,
        /// Session token, for temporary credentials.
        session_token: Option<String>,
    },
    /// A role assumed with the web identity token a platform mounts into the pod (EKS's IRSA:
    /// `AWS_ROLE_ARN`, `AWS_WEB_IDENTITY_TOKEN_FILE`), through STS's AssumeRoleWithWebIdentity.
    /// The token file is read again for every refresh (the platform rotates it).
    WebIdentity {
        /// The role to assume.
        role_arn: String,
        /// The file holding the token.
        token_file: PathBuf,
        /// The session's name in the role's audit trail.
        session_name: String,
        /// STS's address (`AWS_ENDPOINT_URL_STS`); `None` for AWS's regional endpoint.
        sts_endpoint: Option<String>,
    },
}

impl S3Credentials {
    /// Keys, as given.
    pub fn keys(access_key_id: impl Into<String>, secret_access_key: impl Into<String>) -> Self {
        Self::Keys {
            access_key_id: access_key_id.into(),
            secret_access_key: secret_access_key.into(),
            session_token: None,
        }
    }
}

impl std::fmt::Debug for S3Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Keys { access_key_id, .. } => f
                .debug_struct("Keys")
                .field("access_key_id", access_key_id)
                .field("secret_access_key", &"[redacted]")
                .finish_non_exhaustive(),
            Self::WebIdentity {
                role_arn,
                token_file,
                ..
            } => f
                .debug_struct("WebIdentity")
                .field("role_arn", role_arn)
                .field("token_file", token_file)
                .finish_non_exhaustive(),
        }
    }
}

impl std::fmt::Debug for S3Options {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Options")
            .field("bucket", &self.bucket)
            .field("endpoint", &self.endpoint)
            .field("region", &self.region)
            .field("path_style", &self.path_style)
            .field("credentials", &self.credentials)
            .finish_non_exhaustive()
    }
}

impl S3Options {
    /// Options for `bucket` with credentials from the environment: `AWS_ACCESS_KEY_ID` and
    /// `AWS_SECRET_ACCESS_KEY` (and `AWS_SESSION_TOKEN`) when set, otherwise the web identity of
    /// `AWS_ROLE_ARN` and `AWS_WEB_IDENTITY_TOKEN_FILE` (`AWS_ROLE_SESSION_NAME`,
    /// `AWS_ENDPOINT_URL_STS`).
    pub fn from_env(bucket: impl Into<String>) -> StorageResult<Self> {
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
        let credentials = match (
            var("AWS_ACCESS_KEY_ID"),
            var("AWS_SECRET_ACCESS_KEY"),
            var("AWS_ROLE_ARN"),
            var("AWS_WEB_IDENTITY_TOKEN_FILE"),
        ) {
            (Some(access_key_id), Some(secret_access_key), _, _) => S3Credentials::Keys {
                access_key_id,
                secret_access_key,
                session_token: var("AWS_SESSION_TOKEN"),
            },
            (_, _, Some(role_arn), Some(token_file)) => S3Credentials::WebIdentity {
                role_arn,
                token_file: token_file.into(),
                session_name: var("AWS_ROLE_SESSION_NAME").unwrap_or_else(|| "suti".into()),
                sts_endpoint: var("AWS_ENDPOINT_URL_STS"),
            },
            _ => {
                return Err(StorageError::new(
                    StorageErrorKind::Unauthorized,
                    "no S3 credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or \
                     AWS_ROLE_ARN and AWS_WEB_IDENTITY_TOKEN_FILE for a web identity (IRSA)",
                ));
            }
        };
        Ok(Self {
            bucket: bucket.into(),
            endpoint: var("AWS_ENDPOINT_URL"),
            region: var("AWS_REGION").unwrap_or_else(|| "us-east-1".into()),
            path_style: false,
            credentials,
            operation_timeout: Duration::from_secs(120),
            connect_timeout: Duration::from_secs(5),
            max_attempts: 3,
        })
    }
}

/// Credentials from STS's AssumeRoleWithWebIdentity with the token in `token_file`.
#[derive(Debug)]
struct WebIdentityCredentials {
    sts: aws_sdk_sts::Client,
    role_arn: String,
    token_file: PathBuf,
    session_name: String,
}

impl WebIdentityCredentials {
    async fn assume(&self) -> provider::Result {
        let token = tokio::fs::read_to_string(&self.token_file)
            .await
            .map_err(|e| {
                provider::error::CredentialsError::not_loaded(format!(
                    "cannot read the web identity token {}: {e}",
                    self.token_file.display()
                ))
            })?;
        let answer = self
            .sts
            .assume_role_with_web_identity()
            .role_arn(&self.role_arn)
            .role_session_name(&self.session_name)
            .web_identity_token(token.trim())
            .send()
            .await
            .map_err(|e| match (e.code(), e.message()) {
                // STS answered and refused: the token or the role is wrong, retrying won't help.
                (Some(code), message) => {
                    provider::error::CredentialsError::invalid_configuration(format!(
                        "AssumeRoleWithWebIdentity for {}: {code}: {}",
                        self.role_arn,
                        message.unwrap_or("")
                    ))
                }
                _ => provider::error::CredentialsError::provider_error(format!(
                    "AssumeRoleWithWebIdentity for {}: {}",
                    self.role_arn,
                    aws_smithy_types::error::display::DisplayErrorContext(&e)
                )),
            })?;
        let credentials = answer.credentials().ok_or_else(|| {
            provider::error::CredentialsError::invalid_configuration(
                "AssumeRoleWithWebIdentity answered without credentials",
            )
        })?;
        Ok(Credentials::new(
            credentials.access_key_id(),
            credentials.secret_access_key(),
            Some(credentials.session_token().to_string()),
            SystemTime::try_from(*credentials.expiration()).ok(),
            "web-identity",
        ))
    }
}

impl ProvideCredentials for WebIdentityCredentials {
    fn provide_credentials<'a>(&'a self) -> provider::future::ProvideCredentials<'a>
    where
        Self: 'a,
    {
        provider::future::ProvideCredentials::new(self.assume())
    }
}

/// An S3 bucket.
#[derive(Debug, Clone)]
pub struct S3Store {
    client: aws_sdk_s3::Client,
    bucket: String,
}

/// Why the credentials could not be loaded, when that is what failed a request, and whether it is
/// a refusal (a wrong token, role or file) rather than an outage of the credentials' source.
fn credentials_failure(err: &(dyn std::error::Error + 'static)) -> Option<(String, bool)> {
    use provider::error::CredentialsError;
    let mut cause = Some(err);
    while let Some(e) = cause {
        if let Some(failure) = e.downcast_ref::<CredentialsError>() {
            let why = std::error::Error::source(failure).map(ToString::to_string);
            let refused = matches!(
                failure,
                CredentialsError::InvalidConfiguration(_)
                    | CredentialsError::CredentialsNotLoaded(_)
            );
            return Some((why.unwrap_or_else(|| failure.to_string()), refused));
        }
        cause = e.source();
    }
    None
}

/// Maps an SDK failure to a storage error kind, keeping the server's code and message.
fn sdk_error<E>(op: &str, target: &str, err: SdkError<E, HttpResponse>) -> StorageError
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    let credentials = match &err {
        SdkError::DispatchFailure(_) => credentials_failure(&err),
        _ => None,
    };
    let (kind, detail) = match &err {
        SdkError::TimeoutError(_) => (StorageErrorKind::Timeout, "timed out".to_string()),
        SdkError::DispatchFailure(_) if credentials.is_some() => {
            let (why, refused) = credentials.unwrap_or_default();
            let kind = if refused {
                StorageErrorKind::Unauthorized
            } else {
                StorageErrorKind::Unavailable
            };
            (kind, format!("cannot obtain S3 credentials: {why}"))
        }
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
        let credentials = match &options.credentials {
            S3Credentials::Keys {
                access_key_id,
                secret_access_key,
                session_token,
            } => SharedCredentialsProvider::new(Credentials::new(
                access_key_id.clone(),
                secret_access_key.clone(),
                session_token.clone(),
                None,
                "suti-config",
            )),
            // The client's identity cache asks again shortly before the credentials expire.
            S3Credentials::WebIdentity {
                role_arn,
                token_file,
                session_name,
                sts_endpoint,
            } => {
                let mut sts = aws_sdk_sts::Config::builder()
                    .behavior_version(aws_sdk_sts::config::BehaviorVersion::latest())
                    .region(aws_sdk_sts::config::Region::new(options.region.clone()))
                    .http_client(http.clone())
                    .timeout_config(
                        TimeoutConfig::builder()
                            .operation_timeout(options.operation_timeout)
                            .connect_timeout(options.connect_timeout)
                            .build(),
                    );
                if let Some(endpoint) = sts_endpoint {
                    sts = sts.endpoint_url(endpoint);
                }
                SharedCredentialsProvider::new(WebIdentityCredentials {
                    sts: aws_sdk_sts::Client::from_conf(sts.build()),
                    role_arn: role_arn.clone(),
                    token_file: token_file.clone(),
                    session_name: session_name.clone(),
                })
            }
        };
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
