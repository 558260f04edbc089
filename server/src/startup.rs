//! Wires the application once: state ([`crate::state`]), the deploy engine,
//! middleware, routes, static dashboard.
//! `Application::build` binds (port 0 works) and exposes the port, so tests
//! start the real server exactly as production does.
use crate::{
    api::{self, extract},
    auth::{
        password,
        ratelimit::{AttemptLimiter, RateLimiter},
    },
    config::Settings,
    error::ApiError,
    ops::{self, Metrics},
    secrets::MasterKey,
    state::AppState,
    store::{self, cache::ReadCache},
};
use actix_files::{Files, NamedFile};
use actix_web::{
    dev::{fn_service, Server, ServiceRequest, ServiceResponse},
    middleware::{from_fn, Compress},
    web, App, HttpResponse, HttpServer,
};
use anyhow::Context;
use sea_orm::ConnectionTrait;
use std::{net::TcpListener, sync::Arc};

pub struct Application {
    port: u16,
    server: Server,
    pub state: web::Data<AppState>,
}

impl Application {
    /// Connects the store, applies migrations, loads the master key and binds.
    pub async fn build(settings: Settings) -> anyhow::Result<Self> {
        let db = store::connect(&settings).await?;
        store::migrate(&db).await?;
        let key = MasterKey::load_or_create(settings.master_key.as_deref(), &settings.data_dir)?;
        crate::audit::seal_on_upgrade(&db, &key).await?;
        crate::audit::start(&db, &key, &settings).await?;
        let dummy_hash = password::hash(crate::auth::random_secret()).await?;
        let read_cache = if db.get_database_backend() == sea_orm::DbBackend::Postgres {
            let cache = Arc::new(ReadCache::replicated());
            store::cache::listen_postgres(&db, cache.clone());
            cache
        } else {
            Arc::new(ReadCache::single_process())
        };
        let state = web::Data::new(AppState {
            db,
            key,
            metrics: Metrics::new().context("metrics registry")?,
            login_limiter: AttemptLimiter::new("login", settings.login_attempts_per_minute),
            enroll_limiter: AttemptLimiter::new("enroll", settings.enroll_attempts_per_minute),
            hook_limiter: RateLimiter::new(crate::ci::hooks::BAD_SIGNATURES_PER_MINUTE),
            dummy_hash,
            oidc: crate::auth::oidc::Oidc::new(
                settings.oidc_providers.clone(),
                &settings.public_url,
            )?,
            settings: settings.clone(),
            hub: crate::agents::AgentHub::default(),
            live: crate::live::LiveBus::default(),
            engine: crate::deploy::engine::EngineWaker::default(),
            read_cache,
        });
        crate::deploy::engine::spawn(crate::deploy::engine::EngineDeps {
            db: state.db.clone(),
            hub: state.hub.clone(),
            live: state.live.clone(),
            key: state.key.clone(),
            waker: state.engine.clone(),
        });
        let listener = TcpListener::bind(settings.bind)
            .with_context(|| format!("cannot listen on {} (setting `bind`)", settings.bind))?;
        let port = listener.local_addr()?.port();
        let server = server(listener, state.clone())?;
        Ok(Self {
            port,
            server,
            state,
        })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        self.server.await
    }
}

fn cors(settings: &Settings) -> actix_cors::Cors {
    let mut c = actix_cors::Cors::default()
        .allowed_methods(["GET", "POST", "PUT", "PATCH", "DELETE"])
        .allowed_headers([
            "authorization",
            "content-type",
            "x-csrf-token",
            "x-request-id",
        ])
        .expose_headers(["x-request-id"])
        .supports_credentials()
        .max_age(600);
    for o in &settings.cors_origins {
        c = c.allowed_origin(o);
    }
    c
}

async fn api_not_found() -> Result<HttpResponse, ApiError> {
    Err(ApiError::NotFound("route"))
}

fn server(listener: TcpListener, state: web::Data<AppState>) -> anyhow::Result<Server> {
    let settings = state.settings.clone();
    let server = HttpServer::new(move || {
        let static_dir = settings.static_dir.clone();
        let index = static_dir.join("index.html");
        App::new()
            .app_data(state.clone())
            .app_data(extract::BodyLimit(settings.max_body_bytes))
            .app_data(web::PayloadConfig::new(settings.max_body_bytes))
            .configure(extract::configure_errors)
            .wrap(cors(&settings))
            .wrap(Compress::default())
            .wrap(from_fn(ops::middleware))
            .route("/health", web::get().to(ops::health))
            .route("/ready", web::get().to(ops::ready))
            .route("/metrics", web::get().to(ops::metrics))
            .route(
                "/auth/oidc/{id}/login",
                web::get().to(crate::auth::sso::begin),
            )
            .route(
                "/auth/oidc/{id}/callback",
                web::get().to(crate::auth::sso::callback),
            )
            .service(
                web::scope("/api/v1")
                    .wrap(from_fn(crate::auth::middleware))
                    .configure(api::configure)
                    .default_service(web::to(api_not_found)),
            )
            .route("/pkg/{name}", web::get().to(crate::assets::pkg_file))
            .route("/pkg/{name}", web::head().to(crate::assets::pkg_file))
            .service(
                Files::new("/", static_dir)
                    .index_file("index.html")
                    .default_handler(fn_service(move |req: ServiceRequest| {
                        let index = index.clone();
                        async move { spa_index(req, index).await }
                    })),
            )
    })
    // A client that hangs up on an event stream is noticed at once, not at
    // the next keep-alive write.
    .h1_allow_half_closed(false)
    .listen(listener)?
    .run();
    Ok(server)
}

/// Client-side routes (`/projects/…`) get the SPA's index.html.
async fn spa_index(
    req: ServiceRequest,
    index: std::path::PathBuf,
) -> Result<ServiceResponse, actix_web::Error> {
    let (req, _) = req.into_parts();
    let res = match NamedFile::open_async(&index).await {
        Ok(f) => f.into_response(&req),
        Err(_) => HttpResponse::ServiceUnavailable()
            .content_type("text/plain; charset=utf-8")
            .body(format!(
                "The dashboard is not built: {} is missing. Run ./scripts/dev (or `cargo run -p xtask -- build-frontend`).",
                index.display()
            )),
    };
    Ok(ServiceResponse::new(req, res))
}
