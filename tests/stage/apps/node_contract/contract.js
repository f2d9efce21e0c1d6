// Handlers that exercise Lambda's Node.js handler contract on the local stage's workers.
let invocations = 0; // module scope: kept between warm invocations of one environment

exports.asyncHandler = async (event, context) => {
  invocations += 1;
  return {
    statusCode: 200,
    body: JSON.stringify({
      invocations,
      requestId: context.awsRequestId,
      functionName: context.functionName,
      remaining: context.getRemainingTimeInMillis(),
      memory: context.memoryLimitInMB,
      event,
      cwd: process.cwd(),
      dynamodbEndpoint: process.env.AWS_ENDPOINT_URL_DYNAMODB,
    }),
  };
};

exports.callbackHandler = (event, context, callback) => {
  setTimeout(() => callback(null, { statusCode: 201, body: event.body }), 10);
};

exports.callbackError = (event, context, callback) => {
  callback(new TypeError("bad input"));
};

exports.throws = async () => {
  const error = new Error("boom");
  error.name = "ChatError";
  throw error;
};

exports.slow = (event) =>
  new Promise((done) => setTimeout(() => done({ statusCode: 200 }), Number(event.ms)));

exports.nested = { handler: async () => ({ statusCode: 204 }) };
