//! The SPA's wasm entry point: installs the panic hook and mounts `app::spa::App`.

fn main() {
    console_error_panic_hook::set_once();
    leptos::mount::mount_to_body(app::spa::App);
}
