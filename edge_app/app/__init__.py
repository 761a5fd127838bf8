"""The handheld verifier's touch UI (`puf app`).

`inspection` is what the app does (open the bundle, verify a capture, keep the journal,
install a bundle) in plain, testable Python; `worker` runs that work off the UI thread;
`puf_app` wires the screens that only show it (Kivy, imported only when the app runs):
`preview`, `verdict`, `history` and `settings`, each a controller with its kv layout,
their shared widgets in `widgets` and `puf.kv`; in the language `i18n` holds (gettext:
`locale/`).
"""
