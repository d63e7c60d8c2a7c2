FROM python:3.11-slim
WORKDIR /app
COPY requirements.lock pyproject.toml README.md ./
RUN pip install --no-cache-dir -r requirements.lock
COPY worker ./worker
COPY sql ./sql
RUN pip install --no-cache-dir --no-deps -e .
ENV PEDRO_LOG_FORMAT=json
CMD ["pedro-worker", "worker"]
