# The worker and the API (and `booking setup`) share this image; compose picks
# the command. Configuration comes only from the environment.
FROM python:3.11-slim

ENV PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app
COPY pyproject.toml README.md worker.py ./
COPY booking booking
COPY workflows workflows
COPY activities activities
COPY api api
COPY cli cli
RUN pip install . \
    && useradd --system --uid 10001 --no-create-home booking

# Not root: nothing in the image needs it.
USER booking
EXPOSE 8000 9464
CMD ["booking", "api"]
