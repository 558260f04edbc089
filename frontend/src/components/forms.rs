//! Form error state: client-side validation and the server's
//! `{error, message, field}` shown next to the named field.
use leptos::prelude::*;
use slipway_types::{ApiErrorBody, ErrorCode};

/// The current error of one form. `fields` are the field names the form
/// shows; an error for any other field (or none) is shown at the top.
#[derive(Clone, Copy)]
pub struct FormErrors {
    error: RwSignal<Option<ApiErrorBody>>,
    fields: &'static [&'static str],
}

/// `spec.ports[0].container` → `ports[0].container`: service forms show the
/// spec's fields at the top level.
fn normalize(field: &str) -> &str {
    field.strip_prefix("spec.").unwrap_or(field)
}

fn matches(field: &str, name: &str) -> bool {
    let f = normalize(field);
    f == name
        || f.strip_prefix(name)
            .is_some_and(|rest| rest.starts_with('.') || rest.starts_with('['))
}

impl FormErrors {
    pub fn new(fields: &'static [&'static str]) -> Self {
        Self {
            error: RwSignal::new(None),
            fields,
        }
    }

    pub fn clear(&self) {
        self.error.set(None);
    }

    pub fn set(&self, e: ApiErrorBody) {
        self.error.set(Some(e));
    }

    pub fn current(&self) -> Option<ApiErrorBody> {
        self.error.get()
    }

    pub fn has_error(&self) -> bool {
        self.error.with(Option::is_some)
    }

    /// The field an error is about. A `conflict` (duplicate name) names no
    /// field; it is shown at the form's `name` input when there is one.
    fn field_of(&self, e: &ApiErrorBody) -> Option<String> {
        match &e.field {
            Some(f) => Some(f.clone()),
            None if e.error == ErrorCode::Conflict && self.fields.contains(&"name") => {
                Some("name".to_owned())
            }
            None => None,
        }
    }

    /// The message for `name`, if the current error is about that field.
    pub fn message_for(&self, name: &str) -> Option<String> {
        self.error.with(|e| {
            let e = e.as_ref()?;
            match self.field_of(e) {
                Some(f) if matches(&f, name) => Some(e.message.clone()),
                _ => None,
            }
        })
    }

    /// The message shown above the form: errors with no field or a field
    /// this form does not show.
    pub fn general(&self) -> Option<String> {
        let fields = self.fields;
        self.error.with(|e| {
            let e = e.as_ref()?;
            match &self.field_of(e) {
                Some(f) if fields.iter().any(|n| matches(f, n)) => None,
                Some(f) => Some(format!("{f}: {}", e.message)),
                None => Some(e.message.clone()),
            }
        })
    }
}

/// The error line under one input.
#[component]
pub fn FieldError(errors: FormErrors, field: &'static str) -> impl IntoView {
    move || {
        errors.message_for(field).map(|m| {
            view! { <p class="field-error" data-test=format!("error-{field}")>{m}</p> }
        })
    }
}

/// The form-level alert.
#[component]
pub fn FormAlert(errors: FormErrors) -> impl IntoView {
    move || {
        errors
            .general()
            .map(|m| view! { <div class="alert alert-error" data-test="form-error">{m}</div> })
    }
}

#[cfg(test)]
mod tests {
    use super::matches;

    #[test]
    fn server_fields_match_their_inputs() {
        assert!(matches("name", "name"));
        assert!(matches("spec.image", "image"));
        assert!(matches("spec.ports[1].published", "ports"));
        assert!(matches("health_check.path", "health_check.path"));
        assert!(!matches("names", "name"));
        assert!(!matches("image", "name"));
    }
}
