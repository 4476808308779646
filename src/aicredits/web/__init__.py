"""The dashboard: server-rendered pages under /dashboard (Starlette, Jinja2 with autoescape,
static files served by the app; no JavaScript build, nothing from a CDN). web/app.py assembles
it; the dispatcher (api/dispatch.py) hands it only requests whose path starts with /dashboard."""
