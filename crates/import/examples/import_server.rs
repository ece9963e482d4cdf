//! A registry with only the import API merged in, for trying
//! `drydock import` before it is wired into `drydock serve`:
//! `cargo run -p import --example import_server -- DATA_DIR 127.0.0.1:5000`.

#[tokio::main]
async fn main() {
    let mut args = std::env::args().skip(1);
    let data = args.next().expect("usage: import_server DATA_DIR ADDR");
    let addr = args.next().unwrap_or_else(|| "127.0.0.1:5000".into());
    let reg = registry::Registry::open(registry::Options::new(data)).expect("open registry");
    let importer = import::Importer::new(reg.clone(), import::ImportConfig::default());
    let app = reg.router().merge(import::router(importer));
    let listener = tokio::net::TcpListener::bind(&addr).await.expect("bind");
    println!("listening on {addr}");
    axum::serve(listener, app).await.expect("serve");
}
