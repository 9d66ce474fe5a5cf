//! The API's error answer: `{"error": "..."}` with its status, used by the
//! handlers and by the forwarding to another instance alike.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;
use utoipa::ToSchema;

/// An error answer: `{"error": "..."}` with its status.
#[derive(Debug)]
pub struct ApiError(pub StatusCode, pub String);

#[derive(Serialize, ToSchema)]
pub struct ErrorBody {
    /// What went wrong, and what to do about it.
    pub error: String,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut r = (self.0, Json(ErrorBody { error: self.1 })).into_response();
        if self.0 == StatusCode::UNAUTHORIZED {
            r.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        r
    }
}
