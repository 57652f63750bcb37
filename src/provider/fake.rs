//! A simulated NanoBanana: a real HTTP server on a loopback port with the
//! shape of SPEC §6, whose balance and behaviour its owner sets. `demo` runs
//! one; the tests run one per test and make it fail in every documented way.

use std::net::{SocketAddr, TcpListener};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::Duration;

use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};

use super::BALANCE_PATH;

/// The simulator's own control route (not part of NanoBanana's API): `POST`
/// `{"balance": N}` sets the real balance, so a demo can "refill" the account.
pub const DEMO_BALANCE_PATH: &str = "/demo/balance";

/// How the fake answers the next balance requests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Behaviour {
    /// `{"code":200,"msg":"success","data":<balance>}`.
    Healthy,
    /// This HTTP status with an error body.
    Status(u16),
    /// HTTP 200 whose body carries this error `code`.
    ErrorCode(i64),
    /// HTTP 200 with a body that is not JSON.
    Garbage,
    /// HTTP 200, `code` 200, `data` −5.
    Negative,
    /// HTTP 200, `code` 200, `data` a string.
    NonInteger,
    /// Answers healthy, but only after this delay.
    Slow(Duration),
}

struct State {
    balance: i64,
    behaviour: Behaviour,
    requests: u64,
}

/// A running fake provider. Dropping it stops the server.
pub struct FakeProvider {
    state: Arc<Mutex<State>>,
    address: SocketAddr,
    stop: Option<actix_web::dev::ServerHandle>,
    thread: Option<JoinHandle<()>>,
}

impl FakeProvider {
    /// Starts on `127.0.0.1:0`, accepting only `api_key`.
    ///
    /// # Errors
    /// The listener or the server thread could not be created.
    pub fn start(balance: u64, api_key: &str) -> std::io::Result<Self> {
        Self::start_on("127.0.0.1:0", balance, api_key)
    }

    /// Starts on `address`.
    ///
    /// # Errors
    /// The listener or the server thread could not be created.
    pub fn start_on(address: &str, balance: u64, api_key: &str) -> std::io::Result<Self> {
        let listener = TcpListener::bind(address)?;
        let address = listener.local_addr()?;
        let state = Arc::new(Mutex::new(State {
            balance: i64::try_from(balance).unwrap_or(i64::MAX),
            behaviour: Behaviour::Healthy,
            requests: 0,
        }));
        let shared = web::Data::from(Arc::clone(&state));
        let expected = web::Data::new(format!("Bearer {api_key}"));
        let (handle_sender, handle_receiver) = std::sync::mpsc::channel();
        let thread = std::thread::Builder::new().name("fake-nanobanana".into()).spawn(move || {
            let system = actix_rt::System::new();
            system.block_on(async move {
                let server = HttpServer::new(move || {
                    App::new()
                        .app_data(shared.clone())
                        .app_data(expected.clone())
                        .route(BALANCE_PATH, web::get().to(balance_endpoint))
                        .route(DEMO_BALANCE_PATH, web::post().to(set_balance_endpoint))
                })
                .workers(1)
                .disable_signals()
                .shutdown_timeout(1)
                .listen(listener);
                match server {
                    Ok(server) => {
                        let server = server.run();
                        let _ = handle_sender.send(Some(server.handle()));
                        let _ = server.await;
                    }
                    Err(error) => {
                        tracing::error!(%error, "fake provider failed to start");
                        let _ = handle_sender.send(None);
                    }
                }
            });
        })?;
        let stop = handle_receiver
            .recv()
            .ok()
            .flatten()
            .ok_or_else(|| std::io::Error::other("fake provider failed to start"))?;
        Ok(Self { state, address, stop: Some(stop), thread: Some(thread) })
    }

    fn with_state<T>(&self, f: impl FnOnce(&mut State) -> T) -> T {
        f(&mut self.state.lock().unwrap_or_else(PoisonError::into_inner))
    }

    /// The base URL to configure as `NANOBANANA_BASE_URL`.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.address)
    }

    pub fn balance(&self) -> i64 {
        self.with_state(|state| state.balance)
    }

    pub fn set_balance(&self, balance: i64) {
        self.with_state(|state| state.balance = balance);
    }

    /// Lowers the real balance, as the enhancement service's calls do.
    pub fn consume(&self, credits: i64) {
        self.with_state(|state| state.balance = state.balance.saturating_sub(credits));
    }

    pub fn set_behaviour(&self, behaviour: Behaviour) {
        self.with_state(|state| state.behaviour = behaviour);
    }

    /// Balance requests received so far.
    pub fn requests(&self) -> u64 {
        self.with_state(|state| state.requests)
    }
}

impl Drop for FakeProvider {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            // Stopping is asynchronous; the server thread ends on its own.
            drop(stop.stop(false));
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

async fn balance_endpoint(
    request: HttpRequest,
    state: web::Data<Mutex<State>>,
    expected: web::Data<String>,
) -> HttpResponse {
    let authorised = request
        .headers()
        .get("authorization")
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| value == expected.as_str());
    let (balance, behaviour) = {
        let mut state = state.lock().unwrap_or_else(PoisonError::into_inner);
        state.requests = state.requests.saturating_add(1);
        (state.balance, state.behaviour.clone())
    };
    if !authorised {
        return HttpResponse::Unauthorized().json(serde_json::json!({"code": 401, "msg": "invalid api key"}));
    }
    match behaviour {
        Behaviour::Healthy => healthy(balance),
        Behaviour::Slow(delay) => {
            tokio::time::sleep(delay).await;
            healthy(balance)
        }
        Behaviour::Status(status) => HttpResponse::build(
            actix_web::http::StatusCode::from_u16(status).unwrap_or(actix_web::http::StatusCode::INTERNAL_SERVER_ERROR),
        )
        .json(serde_json::json!({"code": status, "msg": "simulated failure"})),
        Behaviour::ErrorCode(code) => {
            HttpResponse::Ok().json(serde_json::json!({"code": code, "msg": "simulated error code"}))
        }
        Behaviour::Garbage => HttpResponse::Ok().content_type("text/html").body("<html>upstream proxy error</html>"),
        Behaviour::Negative => HttpResponse::Ok().json(serde_json::json!({"code": 200, "msg": "success", "data": -5})),
        Behaviour::NonInteger => {
            HttpResponse::Ok().json(serde_json::json!({"code": 200, "msg": "success", "data": "938"}))
        }
    }
}

fn healthy(balance: i64) -> HttpResponse {
    HttpResponse::Ok().json(serde_json::json!({"code": 200, "msg": "success", "data": balance}))
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct SetBalance {
    balance: i64,
}

/// The demo's "refill": sets the simulated real balance.
async fn set_balance_endpoint(body: web::Json<SetBalance>, state: web::Data<Mutex<State>>) -> HttpResponse {
    let mut state = state.lock().unwrap_or_else(PoisonError::into_inner);
    state.balance = body.balance;
    HttpResponse::Ok().json(serde_json::json!({"balance": state.balance}))
}
