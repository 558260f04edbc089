//! Small building blocks shared by the pages.
pub mod envs;
pub mod forms;
pub mod service_form;
pub mod ui;

pub use forms::{FieldError, FormAlert, FormErrors};
pub use ui::{ErrorBox, Loading, StateBadge};
