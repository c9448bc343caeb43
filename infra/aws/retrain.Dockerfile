# retrain as a Lambda container image: the retrain package (training stack, dbt project,
# serving core) on the Lambda Python 3.12 base. The training stack is over Lambda's 250 MB
# unzipped limit for a zip package. sam build builds it with the repository as context,
# after `python infra/package.py aws retrain` (see infra/aws/template.yaml).
#checkov:skip=CKV_DOCKER_2: Lambda never runs a HEALTHCHECK; an environment is ready when its init phase returns
#checkov:skip=CKV_DOCKER_3: Lambda runs every image as its own unprivileged user, whatever USER says
FROM public.ecr.aws/lambda/python:3.12

COPY build/deploy/aws/retrain/requirements.txt ${LAMBDA_TASK_ROOT}/
RUN pip install --no-cache-dir -r "${LAMBDA_TASK_ROOT}/requirements.txt"
COPY build/deploy/aws/retrain/ ${LAMBDA_TASK_ROOT}/

# The handler; the SAM template sets the same in ImageConfig.Command.
CMD ["aws_lambda.retrain"]
