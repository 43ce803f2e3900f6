"""`tonic export`'s parts: names (npm rules), ignore (gitignore semantics), deps (local
modules and packages), links (which symlinks are followed, as copies), package (the
package's layout and fields), render (jinja2 templates), secrets (secret values in the
recorded outputs) and write (atomic output, npm pack)."""
