//! The one API error type. Every failure a client can see maps to a stable
//! code from `slipway_types::ErrorCode` and one HTTP status.
use actix_web::{http::StatusCode, HttpResponse, ResponseError};
use sea_orm::DbErr;
use slipway_types::{ApiErrorBody, ErrorCode, FieldError};

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{message}")]
    Invalid {
        field: Option<String>,
        message: String,
    },
    #[error("malformed JSON: {0}")]
    MalformedJson(String),
    #[error("request body is larger than {0} bytes")]
    PayloadTooLarge(usize),
    #[error("authentication required: log in or send an API token")]
    Unauthenticated,
    #[error("wrong user name or password")]
    InvalidCredentials,
    /// A credential other than a password was refused (e.g. an enrollment token).
    #[error("{0}")]
    CredentialsRejected(String),
    /// An OIDC session reached `oidc_max_session_age`: log in through the provider again.
    #[error("the session is older than the single sign-on limit: log in again")]
    Reauthenticate,
    #[error("missing or wrong X-CSRF-Token header")]
    Csrf,
    #[error("{0}")]
    Forbidden(String),
    #[error("{0} not found")]
    NotFound(&'static str),
    #[error("{0}")]
    Conflict(String),
    #[error("setup is already done: log in instead")]
    SetupDone,
    #[error("too many attempts; retry in {0} seconds")]
    RateLimited(u64),
    #[error("{0}")]
    InvalidTransition(String),
    #[error("{0}")]
    Unavailable(String),
    #[error("{0}")]
    InvalidSignature(String),
    #[error("{0}")]
    DeployFrozen(String),
    /// A deletion in a protected environment while something runs there.
    #[error("{0}")]
    Protected(String),
    /// The path exists, the method does not; carries the `Allow` header value.
    #[error("this route answers only {0}")]
    MethodNotAllowed(String),
    #[error("internal error")]
    Store(#[from] DbErr),
    #[error("internal error")]
    Internal(#[from] anyhow::Error),
}

impl ApiError {
    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        ApiError::Invalid {
            field: Some(field.into()),
            message: message.into(),
        }
    }

    pub fn code(&self) -> ErrorCode {
        match self {
            ApiError::Invalid { .. } => ErrorCode::InvalidInput,
            ApiError::MalformedJson(_) => ErrorCode::MalformedJson,
            ApiError::PayloadTooLarge(_) => ErrorCode::PayloadTooLarge,
            ApiError::Unauthenticated => ErrorCode::Unauthenticated,
            ApiError::InvalidCredentials | ApiError::CredentialsRejected(_) => {
                ErrorCode::InvalidCredentials
            }
            ApiError::Reauthenticate => ErrorCode::ReauthenticationRequired,
            ApiError::Csrf => ErrorCode::CsrfFailed,
            ApiError::Forbidden(_) => ErrorCode::Forbidden,
            ApiError::NotFound(_) => ErrorCode::NotFound,
            ApiError::Conflict(_) => ErrorCode::Conflict,
            ApiError::SetupDone => ErrorCode::SetupAlreadyDone,
            ApiError::RateLimited(_) => ErrorCode::RateLimited,
            ApiError::InvalidTransition(_) => ErrorCode::InvalidStateTransition,
            ApiError::Unavailable(_) => ErrorCode::Unavailable,
            ApiError::InvalidSignature(_) => ErrorCode::InvalidSignature,
            ApiError::DeployFrozen(_) => ErrorCode::DeployFrozen,
            ApiError::Protected(_) => ErrorCode::EnvironmentProtected,
            ApiError::MethodNotAllowed(_) => ErrorCode::MethodNotAllowed,
            ApiError::Store(_) | ApiError::Internal(_) => ErrorCode::Internal,
        }
    }
}

impl From<FieldError> for ApiError {
    fn from(e: FieldError) -> Self {
        ApiError::Invalid {
            field: Some(e.field),
            message: e.message,
        }
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        match self.code() {
            ErrorCode::InvalidInput => StatusCode::UNPROCESSABLE_ENTITY,
            ErrorCode::MalformedJson => StatusCode::BAD_REQUEST,
            ErrorCode::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ErrorCode::Unauthenticated
            | ErrorCode::ReauthenticationRequired
            | ErrorCode::InvalidCredentials
            | ErrorCode::InvalidSignature => StatusCode::UNAUTHORIZED,
            ErrorCode::CsrfFailed | ErrorCode::Forbidden => StatusCode::FORBIDDEN,
            ErrorCode::NotFound => StatusCode::NOT_FOUND,
            ErrorCode::Conflict
            | ErrorCode::SetupAlreadyDone
            | ErrorCode::SetupRequired
            | ErrorCode::InvalidStateTransition
            | ErrorCode::DeployFrozen
            | ErrorCode::EnvironmentProtected => StatusCode::CONFLICT,
            ErrorCode::RateLimited => StatusCode::TOO_MANY_REQUESTS,
            ErrorCode::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ErrorCode::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            ErrorCode::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn error_response(&self) -> HttpResponse {
        match self {
            ApiError::Store(e) => tracing::error!(error = %e, "store error"),
            ApiError::Internal(e) => tracing::error!(error = %format!("{e:#}"), "internal error"),
            _ => {}
        }
        let body = ApiErrorBody {
            error: self.code(),
            message: self.to_string(),
            field: match self {
                ApiError::Invalid { field, .. } => field.clone(),
                _ => None,
            },
        };
        let mut res = HttpResponse::build(self.status_code());
        if let ApiError::RateLimited(secs) = self {
            res.insert_header(("Retry-After", secs.to_string()));
        }
        if let ApiError::MethodNotAllowed(allow) = self {
            res.insert_header(("Allow", allow.as_str()));
        }
        if matches!(self, ApiError::Unauthenticated | ApiError::Reauthenticate) {
            res.insert_header(("WWW-Authenticate", "Bearer"));
        }
        res.json(body)
    }
}

pub type ApiResult<T> = Result<T, ApiError>;
