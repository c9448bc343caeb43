# predict as a container (Cloud Run, Kubernetes, any OCI runtime): the predict package only
# (onnxruntime, numpy, functions-framework, the serving core), never the training stack.
# From the repository root:
#   python infra/package.py gcp predict build/deploy/gcp/predict
#   docker build -t segmentation-predict .
#   docker run --rm -p 8080:8080 -e SEGMENTATION_MODEL_STORE=gs://BUCKET/PREFIX segmentation-predict
FROM python:3.12-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PORT=8080

# An unprivileged user that owns nothing it runs (the code and packages stay root's);
# USER by number, so Kubernetes runAsNonRoot can verify it.
RUN groupadd --system --gid 10001 app \
    && useradd --system --uid 10001 --gid app --no-create-home --shell /usr/sbin/nologin app

WORKDIR /app
# Requirements before the code, so a code change reuses the installed layer.
COPY build/deploy/gcp/predict/requirements.txt ./
RUN pip install --no-cache-dir -r requirements.txt
COPY build/deploy/gcp/predict/ ./

USER 10001:10001
EXPOSE 8080

# The instance's own readiness: predict's GET /health answers 200 once this instance has
# loaded and verified a model, 503 before (urlopen raises on 503). No curl in slim.
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:' + os.environ.get('PORT', '8080') + '/health', timeout=4)"]

# functions-framework listens on $PORT (default 8080), as Cloud Run and Knative set it.
ENTRYPOINT ["functions-framework", "--target", "predict", "--source", "main.py"]
