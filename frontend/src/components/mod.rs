//! Small building blocks shared by the pages.
pub mod env_deploy;
pub mod envs;
pub mod events;
pub mod fetch;
pub mod forms;
pub mod policy;
pub mod protect;
pub mod releases;
pub mod service_form;
pub mod stack;
pub mod ui;
pub mod webhooks;

pub use events::handler;
pub use fetch::Fetch;
pub use forms::{FieldError, FormAlert, FormErrors};
pub use ui::{ErrorBox, HostStatusBadge, Loading, StateBadge};
