# An image that carries secfilt-runtime and installs it onto a node: the runtime, its Python and
# every shared library it loads, bundled in /opt/secfilt-runtime so that the node needs neither
# Python nor libseccomp (deploy/bundle.py). Its entrypoint copies the bundle into the node's
# directory mounted at /host (deploy/install.sh):
#
#   podman build -t secfilt-runtime-installer .
#   podman run --rm -v /usr/local:/host secfilt-runtime-installer   # -> /usr/local/bin/secfilt-runtime
#
# BASE: an image with python3 (>= 3.11) and pip. PIP_OPTS: extra pip options, e.g. "--no-index"
# for a base that already holds the dependencies (the tests build offline from such a base).
ARG BASE=docker.io/library/python:3.11-slim-bookworm
FROM ${BASE}
ARG PIP_OPTS=""

# libseccomp is loaded by name at run time; python:slim lacks it
RUN if ! find / -xdev -name 'libseccomp.so.2*' 2>/dev/null | grep -q .; then \
        apt-get update && apt-get install -y --no-install-recommends libseccomp2 \
        && rm -rf /var/lib/apt/lists/*; \
    fi

COPY pyproject.toml /src/
COPY runtime /src/runtime
# runtime/secfilt_runtime/schemas is a link to specs/
COPY specs /src/specs
COPY deploy/bundle.py deploy/install.sh /usr/local/share/secfilt-runtime/
# the dependencies from PyPI (or what the base holds), the project from its source tree
RUN python3 -m pip install --no-cache-dir ${PIP_OPTS} \
        $(python3 /usr/local/share/secfilt-runtime/bundle.py --requirements /src) \
    && python3 /usr/local/share/secfilt-runtime/bundle.py /opt/secfilt-runtime --source /src \
    && for t in /opt/secfilt-runtime/bin/*.in; do \
        n=$(basename "$t" .in); \
        sed 's#@PREFIX@#/opt/secfilt-runtime#g' "$t" > "/usr/local/bin/$n"; \
        chmod 755 "/usr/local/bin/$n"; \
    done \
    && /usr/local/bin/secfilt-runtime --help > /dev/null \
    && rm -rf /src

ENTRYPOINT ["/bin/sh", "/usr/local/share/secfilt-runtime/install.sh"]
CMD ["/host"]
