import { DynamoDBClient } from "@aws-sdk/client-dynamodb";
import { DynamoDBDocumentClient, PutCommand } from "@aws-sdk/lib-dynamodb";

const ddbDocClient = DynamoDBDocumentClient.from(new DynamoDBClient({}));

export const handler = async (event) => {
  const command = new PutCommand({
    TableName: process.env.TABLE_NAME,
    Item: { connectionId: event.requestContext.connectionId },
  });
  try {
    await ddbDocClient.send(command);
  } catch (err) {
    console.log(err);
    return { statusCode: 500 };
  }
  return { statusCode: 200 };
};
