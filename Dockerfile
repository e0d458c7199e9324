# One image for `booking setup`, the worker and the API; compose picks the command.
# Configuration comes only from the environment. The dev-only packages (the Temporal dev
# and test servers, an embedded Postgres: the `dev` extra) are not installed.
FROM python:3.11-slim

ENV PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app

# Dependencies first, in a layer of their own: a change to the sources does not reinstall them.
COPY pyproject.toml ./
RUN python -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" \
        > /tmp/requirements.txt \
    && pip install -r /tmp/requirements.txt \
    && rm /tmp/requirements.txt

COPY README.md worker.py ./
COPY booking booking
COPY workflows workflows
COPY activities activities
COPY api api
COPY cli cli
RUN pip install --no-deps . \
    && useradd --system --uid 10001 --no-create-home booking

# Not root: nothing in the image needs it.
USER booking
EXPOSE 8000 9464
CMD ["booking", "api"]
